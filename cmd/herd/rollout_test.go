package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/daemontest"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

// TestCLIRollout: herd rollout plan (table and JSON), a refused start that
// names the field, a start without a hook whose hosts wait for continue,
// show, continue and cancel, as a terminal shows them.
func TestCLIRollout(t *testing.T) {
	dev := daemontest.StartDev(t, daemon.DevOptions{Hosts: 3, VMs: 6, Policy: func(p *policy.Document) {
		p.Health = policy.HealthPolicy{SuspectAfter: 500 * time.Millisecond, DeadAfter: 1500 * time.Millisecond, AliveAfter: time.Second}
	}})
	addr := "--address=" + dev.APIAddr()
	testutil.WaitFor(t, 20*time.Second, "inventory", func() bool {
		_, out, _ := runCLI("vm", "ls", addr)
		return strings.Count(out, "\nvm-") == 6
	})
	code, out, errOut := runCLI("rollout", "plan", "--all", "--parallel", "2", addr)
	if code != 0 || !strings.Contains(out, "3 hosts in 2 waves, parallel 2") || !strings.Contains(out, "WAVE") {
		t.Fatalf("rollout plan: exit %d:\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI("rollout", "plan", "--hosts", strings.Join(dev.Sim.HostNames()[:2], ","), "--order", "listed", addr, "-o", "json")
	var p api.RolloutPlan
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || len(p.Waves) != 2 || p.Waves[0].Hosts[0] != dev.Sim.HostNames()[0] || !p.OK {
		t.Fatalf("rollout plan -o json: exit %d:\n%s", code, out)
	}
	code, _, errOut = runCLI("rollout", "start", "--all", "--hook", "reboot", addr)
	if code == 0 || !strings.Contains(errOut, "hook") || !strings.Contains(errOut, "rollout.hooks") {
		t.Fatalf("start with a hook the policy lacks: exit %d: %s", code, errOut)
	}
	code, out, errOut = runCLI("rollout", "start", "--all", "--order", "listed", addr)
	if code != 0 || !strings.Contains(out, "Rollout ro-") {
		t.Fatalf("rollout start: exit %d: %s %s", code, out, errOut)
	}
	id := strings.Fields(out)[1]
	first := dev.Sim.HostNames()[0]
	testutil.WaitFor(t, 30*time.Second, first+" waiting for continue", func() bool {
		_, out, _ := runCLI("rollout", "show", id, addr)
		return strings.Contains(out, first) && strings.Contains(out, "working")
	})
	if code, out, _ = runCLI("rollout", "ls", addr); code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "running") {
		t.Fatalf("rollout ls: exit %d:\n%s", code, out)
	}
	if code, out, errOut = runCLI("rollout", "continue", id, first, addr); code != 0 || !strings.Contains(out, "work done") {
		t.Fatalf("rollout continue: exit %d: %s %s", code, out, errOut)
	}
	if code, out, errOut = runCLI("rollout", "cancel", id, addr); code != 0 || !strings.Contains(out, "stopping") {
		t.Fatalf("rollout cancel: exit %d: %s %s", code, out, errOut)
	}
	testutil.WaitFor(t, 30*time.Second, "rollout cancelled", func() bool {
		_, out, _ := runCLI("rollout", "show", id, addr)
		return strings.Contains(out, ": cancelled") && strings.Contains(out, "skipped")
	})
	// A cancel is the operator's own choice: shown as such, not as an error.
	if _, out, _ = runCLI("rollout", "show", id, addr); strings.Contains(out, "Error") || !strings.Contains(out, "Cancelled: ") {
		t.Fatalf("rollout show of a cancelled rollout:\n%s", out)
	}
}
