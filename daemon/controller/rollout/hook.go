package rollout

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herd-project/herd/policy"
)

// ExecRunner runs hooks as programs on the leader: the policy's command
// (no shell), "{host}" in an argument replaced by HERD_HOST, the rollout's
// variables added to the server's environment, stdout and stderr captured
// (the last 64 KiB), killed with its process group at its timeout.
type ExecRunner struct{}

// maxOutput bounds the output kept of one hook run.
const maxOutput = 64 << 10

// Run implements HookRunner.
func (ExecRunner) Run(ctx context.Context, hook policy.RolloutHook, env map[string]string) (string, error) {
	if len(hook.Command) == 0 {
		return "", fmt.Errorf("hook %s has no command", hook.Name)
	}
	timeout := hook.Timeout
	if timeout <= 0 {
		timeout = policy.DefaultHookTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := make([]string, len(hook.Command))
	for i, a := range hook.Command {
		args[i] = strings.ReplaceAll(a, "{host}", env["HERD_HOST"])
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out := &tailBuffer{max: maxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return out.String(), fmt.Errorf("timed out after %s (rollout.hooks timeout): killed", timeout)
	case err != nil:
		return out.String(), fmt.Errorf("%s: %w", args[0], err)
	}
	return out.String(), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if over := t.b.Len() - t.max; over > 0 {
		t.b.Next(over)
		t.cut = true
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(t.b.String())
	if t.cut {
		return "…" + s
	}
	return s
}
