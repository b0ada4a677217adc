// Package fence drives power fencing devices through the fence-agent
// interface that Pacemaker uses (fence_ipmilan, fence_redfish, … from
// Debian's fence-agents): the agent reads key=value lines on stdin, and
// its exit status says how it went. For "status", 0 means on, 2 means off,
// anything else is an error.
package fence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/herd-project/herd/drivers"
)

// Power is a host's power state as its fence device reports it.
type Power string

const (
	On  Power = "on"
	Off Power = "off"
)

// DefaultTimeout bounds one agent run when the agent sets none.
const DefaultTimeout = 30 * time.Second

// Agent is one fence device for one host.
type Agent struct {
	// Name identifies the device in errors and logs (e.g. "ipmi host-7").
	Name string
	// Path of the agent program.
	Path string
	// Params are passed on stdin as key=value (ip, username, plug, lanplus…).
	Params map[string]string
	// SecretFiles name parameters read from files at each run (password →
	// /etc/herd/ipmi-host7.pass): secrets never sit in configuration, and
	// never appear in errors.
	SecretFiles map[string]string
	// Timeout bounds one agent run.
	Timeout time.Duration
	// ConfirmTimeout bounds how long Fence waits for "status" to say off.
	ConfirmTimeout time.Duration
}

// Validate names the first bad field.
func (a *Agent) Validate() error {
	if a.Path == "" {
		return errors.New("path: must be set")
	}
	for k, v := range a.Params {
		if err := checkParam(k, v); err != nil {
			return fmt.Errorf("params.%s: %w", k, err)
		}
	}
	for k := range a.SecretFiles {
		if err := checkParam(k, ""); err != nil {
			return fmt.Errorf("secret_files.%s: %w", k, err)
		}
		if _, dup := a.Params[k]; dup {
			return fmt.Errorf("secret_files.%s: also set in params", k)
		}
	}
	return nil
}

func checkParam(k, v string) error {
	if k == "" || strings.ContainsAny(k, "=\n\r") || k == "action" {
		return fmt.Errorf("%q is not a parameter name an agent can take", k)
	}
	if strings.ContainsAny(v, "\n\r") {
		return errors.New("value must not contain a line break")
	}
	return nil
}

// Status asks the device whether the host is powered on.
func (a *Agent) Status(ctx context.Context) (Power, error) {
	code, err := a.run(ctx, "status")
	if err != nil {
		return "", err
	}
	switch code {
	case 0:
		return On, nil
	case 2:
		return Off, nil
	}
	return "", fmt.Errorf("fence %s: status: agent exited with %d", a.Name, code)
}

// Off powers the host off.
func (a *Agent) Off(ctx context.Context) error { return a.action(ctx, "off") }

// On powers the host on.
func (a *Agent) On(ctx context.Context) error { return a.action(ctx, "on") }

func (a *Agent) action(ctx context.Context, action string) error {
	code, err := a.run(ctx, action)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("fence %s: %s: agent exited with %d", a.Name, action, code)
	}
	return nil
}

// Fence powers the host off and confirms it with "status": only a
// confirmed off is a fence. It returns nil once the device says off.
func (a *Agent) Fence(ctx context.Context) error {
	if err := a.Off(ctx); err != nil {
		return err
	}
	wait := a.ConfirmTimeout
	if wait <= 0 {
		wait = a.timeout()
	}
	deadline := time.Now().Add(wait)
	var last error
	for delay := 200 * time.Millisecond; ; delay = min(delay*2, 2*time.Second) {
		p, err := a.Status(ctx)
		if err == nil && p == Off {
			return nil
		}
		last = err
		if err == nil {
			last = fmt.Errorf("fence %s: status still %s after off", a.Name, p)
		}
		if time.Now().Add(delay).After(deadline) {
			return fmt.Errorf("%w (not confirmed within %s)", last, wait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fence %s: confirm off: %w", a.Name, ctxErr(ctx.Err()))
		case <-time.After(delay):
		}
	}
}

func (a *Agent) timeout() time.Duration {
	if a.Timeout > 0 {
		return a.Timeout
	}
	return DefaultTimeout
}

func ctxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", drivers.ErrTimeout, err)
	}
	return err
}

// run starts the agent with action and the parameters on stdin, and
// returns its exit status. Errors never carry a secret.
func (a *Agent) run(ctx context.Context, action string) (int, error) {
	if err := a.Validate(); err != nil {
		return 0, fmt.Errorf("fence %s: %w", a.Name, err)
	}
	secrets := make([]string, 0, len(a.SecretFiles))
	var in bytes.Buffer
	fmt.Fprintf(&in, "action=%s\n", action)
	keys := make([]string, 0, len(a.Params))
	for k := range a.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&in, "%s=%s\n", k, a.Params[k])
	}
	skeys := make([]string, 0, len(a.SecretFiles))
	for k := range a.SecretFiles {
		skeys = append(skeys, k)
	}
	sort.Strings(skeys)
	for _, k := range skeys {
		b, err := os.ReadFile(a.SecretFiles[k])
		if err != nil {
			return 0, fmt.Errorf("fence %s: read secret %s: %w", a.Name, k, err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if strings.ContainsAny(v, "\n\r") {
			return 0, fmt.Errorf("fence %s: secret %s spans several lines", a.Name, k)
		}
		secrets = append(secrets, v)
		fmt.Fprintf(&in, "%s=%s\n", k, v)
	}

	rctx, cancel := context.WithTimeout(ctx, a.timeout())
	defer cancel()
	cmd := exec.CommandContext(rctx, a.Path)
	cmd.Stdin = &in
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so a timeout kills the agent's children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if rctx.Err() != nil {
		return 0, fmt.Errorf("fence %s: %s: %w", a.Name, action, ctxErr(rctx.Err()))
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), annotate(a, action, ee.ExitCode(), out.String(), secrets)
	}
	if err != nil {
		return 0, fmt.Errorf("fence %s: %s: %w", a.Name, action, err)
	}
	return 0, nil
}

// annotate keeps a failed run's output for the caller's log, without
// secrets; a status answer of 2 (off) is no failure.
func annotate(a *Agent, action string, code int, output string, secrets []string) error {
	if action == "status" && (code == 0 || code == 2) {
		return nil
	}
	for _, s := range secrets {
		if s != "" {
			output = strings.ReplaceAll(output, s, "[redacted]")
		}
	}
	output = strings.TrimSpace(output)
	if len(output) > 512 {
		output = output[:512] + "…"
	}
	return &AgentError{Device: a.Name, Action: action, Code: code, Output: output}
}

// AgentError is an agent that ran and failed.
type AgentError struct {
	Device, Action string
	Code           int
	Output         string
}

func (e *AgentError) Error() string {
	return fmt.Sprintf("fence %s: %s: agent exited with %d: %s", e.Device, e.Action, e.Code, e.Output)
}
