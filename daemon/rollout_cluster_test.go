package daemon

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/drivers/vsphere"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

// TestRolloutResumesOnNewLeader: three real servers run a rollout over
// three hosts, one at a time, with a hook; the leader is killed once the
// second host's hook has run, or while it runs. The new leader takes the
// rollout over where it was: every host passes, and no host step is
// repeated (each host's hook ran once, each host was evacuated once). A
// hook cut short with its leader is not run again: its host waits, says
// why, and goes on with herd rollout continue.
func TestRolloutResumesOnNewLeader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hook   string
		killAt func(*api.Rollout, string) bool
		orphan bool
	}{
		{"after the hook", "sleep 0.2", func(r *api.Rollout, h string) bool {
			p := phaseOf(r, h)
			return p == "returning" || p == "exiting"
		}, false},
		{"during the hook", `case "$HERD_HOST" in SECOND) sleep 5;; esac`, func(r *api.Rollout, h string) bool {
			return phaseOf(r, h) == "working" && r.Hosts[1].HookRuns == 1
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) { rolloutLeaderKill(t, tc.hook, tc.killAt, tc.orphan) })
	}
}

func rolloutLeaderKill(t *testing.T, hook string, killAt func(*api.Rollout, string) bool, orphan bool) {
	sim, err := vsphere.StartSimulator(vsphere.SimConfig{Hosts: 3, VMs: 9})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	names := sim.HostNames()
	sort.Strings(names)
	script, runs := hookScript(t, strings.ReplaceAll(hook, "SECOND", names[1]))
	tc := newTestClusterWith(t, 3, sim, nil, rolloutPolicy(policy.RolloutHook{Name: "patch", Command: []string{script}, Timeout: 20 * time.Second}))
	leader := tc.leader()
	c := tc.client((leader + 1) % 3) // a follower: writes are forwarded
	waitInventory(t, c, 3, 9)
	ctx := context.Background()
	r, err := c.StartRollout(ctx, api.RolloutRequest{All: true, Order: "listed", Hook: "patch"})
	if err != nil {
		t.Fatal(err)
	}
	second := r.Hosts[1].Host
	if second != names[1] {
		t.Fatalf("second host %s, want %s", second, names[1])
	}
	waitRollout(t, c, r.ID, 60*time.Second, "the moment to kill the leader", func(r *api.Rollout) bool { return killAt(r, second) })
	tc.stop(leader)
	survivor := tc.client((leader + 1) % 3)
	if orphan {
		waitRollout(t, survivor, r.ID, 30*time.Second, "the new leader to say the hook is not run again", func(r *api.Rollout) bool {
			return strings.Contains(r.Hosts[1].Note, "not run again")
		})
		// A 503 while leadership settles changed nothing: ask again.
		testutil.WaitFor(t, 20*time.Second, "continue to be committed", func() bool {
			_, err := survivor.ContinueRollout(ctx, r.ID, second)
			return err == nil
		})
	}
	r = waitRollout(t, survivor, r.ID, 90*time.Second, "rollout to end on the new leader", ended)
	if r.State != "succeeded" || r.Counts["done"] != 3 {
		t.Fatalf("rollout after the leader was killed: %+v", r)
	}
	counts := hookRuns(t, runs)
	for _, h := range r.Hosts {
		if counts[h.Host] != 1 || h.HookRuns != 1 {
			t.Errorf("host %s: hook ran %d times (state says %d)", h.Host, counts[h.Host], h.HookRuns)
		}
	}
	ops, err := survivor.Operations(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	evacuations := map[string]int{}
	for _, op := range ops {
		if op.Kind == api.OpEvacuate {
			evacuations[op.Host]++
			if op.State != api.OpSucceeded {
				t.Errorf("evacuation %s of %s: %s", op.ID, op.Host, op.State)
			}
		}
	}
	for _, h := range r.Hosts {
		if evacuations[h.Host] != 1 {
			t.Errorf("host %s evacuated %d times", h.Host, evacuations[h.Host])
		}
	}
	hs, _ := survivor.Hosts(ctx)
	for _, h := range hs {
		if h.Maintenance != api.MaintenanceOff || h.Admin != api.Available {
			t.Errorf("host %s ends %s, maintenance %s", h.Name, h.Admin, h.Maintenance)
		}
	}
}
