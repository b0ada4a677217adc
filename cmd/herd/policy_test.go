package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/internal/testutil"
)

const badPolicy = "apiVersion: herd/v1\nkind: Policy\nbalancing:\n  mode: sometimes\n  max_moves: -1\n"

func TestPolicyCommands(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("apiVersion: herd/v1\nkind: Policy\nmaintenance:\n  per_source: 3\n"), 0o644)
	os.WriteFile(bad, []byte(badPolicy), 0o644)

	// validate needs no server.
	if code, out, _ := runCLI("policy", "validate", good); code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("validate good: exit %d %s", code, out)
	}
	code, _, errOut := runCLI("policy", "validate", bad)
	if code != exitError || !strings.Contains(errOut, bad+":4:9: balancing.mode") || !strings.Contains(errOut, bad+":5:14: balancing.max_moves") {
		t.Fatalf("validate bad: exit %d\n%s", code, errOut)
	}

	dev := startDev(t, 2, 2)
	addr := "--address=" + dev.APIAddr()
	testutil.WaitFor(t, 10*time.Second, "policy in force", func() bool { return dev.Node().FSM().State().Policy != nil })
	if code, out, _ := runCLI("policy", "diff", good, addr); code != exitError || !strings.Contains(out, "-  per_source: 2") || !strings.Contains(out, "+  per_source: 3") {
		t.Fatalf("diff: exit %d\n%s", code, out)
	}
	if code, _, errOut := runCLI("policy", "apply", bad, addr); code != exitError || !strings.Contains(errOut, "policy.yaml:4:9: balancing.mode") || !strings.Contains(errOut, "(HTTP 400)") {
		t.Fatalf("apply bad: exit %d %s", code, errOut)
	}
	if code, out, errOut := runCLI("policy", "apply", good, addr); code != 0 || !strings.Contains(out, "Policy version 2 in force") {
		t.Fatalf("apply good: exit %d %s %s", code, out, errOut)
	}
	if code, out, _ := runCLI("policy", "diff", good, addr); code != 0 || !strings.Contains(out, "is the policy in force (version 2)") {
		t.Fatalf("diff after apply: exit %d %s", code, out)
	}
	if code, out, _ := runCLI("policy", "show", addr); code != 0 || !strings.Contains(out, "# version 2") || !strings.Contains(out, "per_source: 3") {
		t.Fatalf("show: exit %d %s", code, out)
	}
}

// TestServerProcess runs `herd server` with HERD_TEST_SERVER_ARGS; it is
// the child process of TestSIGHUPRefusesBadPolicy.
func TestServerProcess(t *testing.T) {
	args := os.Getenv("HERD_TEST_SERVER_ARGS")
	if args == "" {
		t.Skip("started by TestSIGHUPRefusesBadPolicy")
	}
	os.Exit(run(strings.Fields(args)))
}

func TestSIGHUPRefusesBadPolicy(t *testing.T) {
	dir := t.TempDir()
	api1, raft1 := testutil.FreePort(t), testutil.FreePort(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestServerProcess$")
	cmd.Env = append(os.Environ(), "HERD_TEST_SERVER_ARGS=server -dev -dev-hosts 2 -dev-vms 2 -dev-api "+api1+" -dev-raft "+raft1+" -data-dir "+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	c, _ := api.NewClient(api1, "")
	var before *api.Cluster
	testutil.WaitFor(t, 20*time.Second, "the server process", func() bool {
		cl, err := c.Cluster(t.Context())
		before = cl
		return err == nil && cl.Policy.Version == 1 && cl.Policy.ReloadOK
	})
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(badPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	testutil.WaitFor(t, 10*time.Second, "the bad file refused", func() bool {
		cl, err := c.Cluster(t.Context())
		return err == nil && !cl.Policy.ReloadOK && strings.Contains(cl.Policy.ReloadErr, "balancing.mode")
	})
	after, _ := c.Cluster(t.Context())
	if after.Policy.Version != before.Policy.Version || after.Policy.Hash != before.Policy.Hash {
		t.Fatalf("a bad file changed the policy in force: %+v", after.Policy)
	}
	// The status says "refused" a moment before the event is committed.
	testutil.WaitFor(t, 5*time.Second, "a policy.reload_failed event", func() bool {
		ev, _ := c.Events(t.Context(), api.EventQuery{})
		for _, e := range ev.Events {
			if e.Type == "policy.reload_failed" {
				return true
			}
		}
		return false
	})
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("server exit after SIGTERM: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "SIGHUP: reloading the policy file") {
		t.Errorf("the server did not log the SIGHUP:\n%s", stderr.String())
	}
}
