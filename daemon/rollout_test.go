package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

// rolloutPolicy is a policy for rollout tests: crashes seen in a second or
// two, and the named hooks.
func rolloutPolicy(hooks ...policy.RolloutHook) func(*policy.Document) {
	return func(p *policy.Document) {
		p.Health = policy.HealthPolicy{SuspectAfter: 500 * time.Millisecond, DeadAfter: 1500 * time.Millisecond, AliveAfter: time.Second}
		p.Recovery.RetryBackoff, p.Recovery.MaxBackoff = 200*time.Millisecond, time.Second
		p.Rollout.Hooks = hooks
	}
}

// hookScript writes an executable shell script whose runs append
// "$HERD_HOST" to a file; body runs after that.
func hookScript(t *testing.T, body string) (path, runs string) {
	t.Helper()
	dir := t.TempDir()
	path, runs = filepath.Join(dir, "hook.sh"), filepath.Join(dir, "runs")
	script := fmt.Sprintf("#!/bin/sh\necho \"$HERD_HOST\" >> %s\necho \"patching $HERD_HOST for $HERD_ROLLOUT\"\n%s\n", runs, body)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, runs
}

// hookRuns counts the hook's runs per host.
func hookRuns(t *testing.T, runs string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(runs)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, l := range strings.Fields(string(b)) {
		out[l]++
	}
	return out
}

// waitRollout waits until rollout id satisfies ok.
func waitRollout(t *testing.T, c *api.Client, id string, timeout time.Duration, what string, ok func(*api.Rollout) bool) *api.Rollout {
	t.Helper()
	var r *api.Rollout
	testutil.WaitFor(t, timeout, what, func() bool {
		got, err := c.Rollout(context.Background(), id)
		if err != nil {
			return false
		}
		r = got
		return ok(got)
	})
	return r
}

func ended(r *api.Rollout) bool {
	return r.State == "succeeded" || r.State == "failed" || r.State == "cancelled"
}

func phaseOf(r *api.Rollout, host string) string {
	for _, h := range r.Hosts {
		if h.Host == host {
			return h.Phase
		}
	}
	return ""
}

// runningVMs returns the ids of the running VMs.
func runningVMs(t *testing.T, c *api.Client) []string {
	t.Helper()
	vms, err := c.VMs(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, vm := range vms {
		if vm.Power == api.PoweredOn {
			out = append(out, vm.ID)
		}
	}
	sort.Strings(out)
	return out
}

// TestRolloutRebootsEveryDevHost: a rollout over the 4 simulator hosts,
// two at a time, with a hook that reboots each host (down for longer than
// dead_after, with its stopped VMs still on it: --migrate active-only).
// Every host passes, the running VMs are the same before and after, no
// host is fenced and nothing is recovered although the hosts went dead,
// never more than 2 hosts are out, and each host's hook ran once.
func TestRolloutRebootsEveryDevHost(t *testing.T) {
	script, runs := hookScript(t, `exec curl -sSf -X POST "$HERD_ADDR/v1/dev/hosts/$HERD_HOST/reboot?down=2500ms"`)
	dev, c := startDevWith(t, 4, 16, nil, rolloutPolicy(policy.RolloutHook{Name: "reboot", Command: []string{script}, Timeout: 20 * time.Second}))
	ctx := context.Background()
	before := runningVMs(t, c)
	var stopped int
	vms, _ := c.VMs(ctx, "")
	for _, vm := range vms {
		if vm.Power != api.PoweredOn {
			stopped++
		}
	}
	if stopped == 0 {
		t.Fatal("the simulator has no stopped VM: the test needs one to stay on a rebooting host")
	}

	// Sample how many hosts are out while the rollout runs.
	var maxOut, sawTwo atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			hs, err := c.Hosts(ctx)
			if err != nil {
				continue
			}
			n := int32(0)
			for _, h := range hs {
				if h.Maintenance != api.MaintenanceOff {
					n++
				}
			}
			if n > maxOut.Load() {
				maxOut.Store(n)
			}
			if n == 2 {
				sawTwo.Store(1)
			}
		}
	}()

	r, err := c.StartRollout(ctx, api.RolloutRequest{All: true, Parallel: 2, Migrate: "active-only", Hook: "reboot"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Parallel != 2 || len(r.Hosts) != 4 {
		t.Fatalf("rollout: %+v", r)
	}
	r = waitRollout(t, c, r.ID, 120*time.Second, "rollout to end", ended)
	close(stop)
	wg.Wait()
	if r.State != "succeeded" || r.Counts["done"] != 4 {
		t.Fatalf("rollout ended %s: %+v", r.State, r)
	}
	if n := maxOut.Load(); n > 2 || sawTwo.Load() == 0 {
		t.Fatalf("hosts out at once: at most %d (parallel 2), two at once seen: %v", n, sawTwo.Load() == 1)
	}
	for _, h := range dev.Sim.HostNames() {
		if n := hookRuns(t, runs)[h]; n != 1 {
			t.Errorf("hook ran %d times on %s", n, h)
		}
	}
	testutil.WaitFor(t, 20*time.Second, "every host AVAILABLE, alive, maintenance off", func() bool {
		hs, err := c.Hosts(ctx)
		if err != nil {
			return false
		}
		for _, h := range hs {
			if h.Admin != api.Available || h.Maintenance != api.MaintenanceOff || h.Health != api.HealthAlive {
				return false
			}
		}
		return true
	})
	testutil.WaitFor(t, 10*time.Second, "the same VMs running as before", func() bool {
		return strings.Join(runningVMs(t, c), ",") == strings.Join(before, ",")
	})
	// The hosts went dead during their work, and nothing was fenced or
	// recovered.
	evs := queryEvents(t, c, api.EventQuery{})
	dead := 0
	for _, e := range evs {
		switch {
		case e.Type == "host.health" && strings.Contains(e.Message, " is dead "):
			dead++
		case e.Type == "host.fenced" || e.Type == "host.fencing_failed" || strings.HasPrefix(e.Type, "recovery."):
			t.Errorf("during a rollout: %s %s", e.Type, e.Message)
		}
	}
	if dead == 0 {
		t.Error("no host was seen dead: the reboots did not exercise the no-fencing rule")
	}
	ops, _ := c.Operations(ctx, "")
	for _, op := range ops {
		if op.Kind == api.OpRecover {
			t.Errorf("recovery operation %s on %s", op.ID, op.Host)
		}
	}
	if !hasEvent(queryEvents(t, c, api.EventQuery{Operation: r.ID}), "rollout.hook_done", "patching") {
		t.Error("the hook's output is not in the event log")
	}
}

// TestRolloutWaitPauseResumeCancel: without a hook, each host waits in its
// work phase for herd rollout continue. A paused rollout starts no host;
// resumed, it goes on; cancelled, the host out finishes and the rest is
// skipped.
func TestRolloutWaitPauseResumeCancel(t *testing.T) {
	dev, c := startDevWith(t, 3, 6, nil, rolloutPolicy())
	ctx := context.Background()
	r, err := c.StartRollout(ctx, api.RolloutRequest{All: true, Order: "listed"})
	if err != nil {
		t.Fatal(err)
	}
	h1, h2, h3 := r.Hosts[0].Host, r.Hosts[1].Host, r.Hosts[2].Host
	r = waitRollout(t, c, r.ID, 30*time.Second, h1+" waiting in its work", func(r *api.Rollout) bool {
		return phaseOf(r, h1) == "working"
	})
	// The metrics say where the hosts are.
	if m := metricsText(t, dev.Server); !strings.Contains(m, `herd_rollout_hosts{state="working"} 1`) || !strings.Contains(m, `herd_rollout_hosts{state="pending"} 2`) ||
		!strings.Contains(m, `herd_rollouts{state="running"} 1`) {
		t.Errorf("rollout metrics while %s works:\n%s", h1, grepLines(m, "herd_rollout"))
	}
	if _, err := c.RolloutAction(ctx, r.ID, "pause"); err != nil {
		t.Fatal(err)
	}
	// A host out finishes its step while paused.
	if _, err := c.ContinueRollout(ctx, r.ID, h1); err != nil {
		t.Fatal(err)
	}
	r = waitRollout(t, c, r.ID, 30*time.Second, h1+" done", func(r *api.Rollout) bool { return phaseOf(r, h1) == "done" })
	if r.State != "paused" || phaseOf(r, h2) != "pending" {
		t.Fatalf("paused rollout: %s, %s %s", r.State, h2, phaseOf(r, h2))
	}
	// Still paused a few controller rounds later.
	time.Sleep(time.Second)
	if r, _ = c.Rollout(ctx, r.ID); phaseOf(r, h2) != "pending" {
		t.Fatalf("a paused rollout started %s", h2)
	}
	if _, err := c.RolloutAction(ctx, r.ID, "resume"); err != nil {
		t.Fatal(err)
	}
	waitRollout(t, c, r.ID, 30*time.Second, h2+" working", func(r *api.Rollout) bool { return phaseOf(r, h2) == "working" })
	if _, err := c.RolloutAction(ctx, r.ID, "cancel"); err != nil {
		t.Fatal(err)
	}
	// Cancelled: resume is refused, naming the rollout.
	var se *api.StatusError
	if _, err := c.RolloutAction(ctx, r.ID, "resume"); !errors.As(err, &se) || se.Code != 409 || se.Body.Field != "rollout" {
		t.Fatalf("resume of a cancelled rollout: %v", err)
	}
	if _, err := c.ContinueRollout(ctx, r.ID, h2); err != nil {
		t.Fatal(err)
	}
	r = waitRollout(t, c, r.ID, 30*time.Second, "rollout to end", ended)
	if r.State != "cancelled" || phaseOf(r, h2) != "done" || phaseOf(r, h3) != "skipped" {
		t.Fatalf("cancelled rollout: %+v", r)
	}
	hs, _ := c.Hosts(ctx)
	for _, h := range hs {
		if h.Maintenance != api.MaintenanceOff {
			t.Errorf("host %s left in maintenance %s", h.Name, h.Maintenance)
		}
	}
	// Two hosts went through every phase: each phase's duration was observed twice.
	if m := metricsText(t, dev.Server); !strings.Contains(m, `herd_rollout_step_duration_seconds_count{step="working"} 2`) ||
		!strings.Contains(m, `herd_rollout_step_duration_seconds_count{step="exiting"} 2`) {
		t.Errorf("step durations:\n%s", grepLines(m, "herd_rollout_step_duration_seconds_count"))
	}
}

// TestRolloutBadInputNamesTheField: bad requests get a 4xx naming the
// field and start nothing; a plan with blockers is refused unless forced.
func TestRolloutBadInputNamesTheField(t *testing.T) {
	script, _ := hookScript(t, "true")
	dev, c := startDevWith(t, 3, 6, nil, rolloutPolicy(policy.RolloutHook{Name: "patch", Command: []string{script}, Timeout: time.Minute}))
	ctx := context.Background()
	hosts := dev.Sim.HostNames()
	for _, tc := range []struct {
		name  string
		req   api.RolloutRequest
		code  int
		field string
	}{
		{"no hosts", api.RolloutRequest{}, 400, "hosts"},
		{"two ways", api.RolloutRequest{All: true, Hosts: hosts[:1]}, 400, "hosts"},
		{"unknown host", api.RolloutRequest{Hosts: []string{"nope"}}, 404, "hosts"},
		{"unknown group", api.RolloutRequest{Group: "nope"}, 404, "group"},
		{"hook not in policy", api.RolloutRequest{All: true, Hook: "rm -rf /"}, 400, "hook"},
		{"parallel", api.RolloutRequest{All: true, Parallel: 100}, 400, "parallel"},
		{"order", api.RolloutRequest{All: true, Order: "random"}, 400, "order"},
		{"migrate none", api.RolloutRequest{All: true, Migrate: "none"}, 400, "migrate"},
		{"on failure", api.RolloutRequest{All: true, OnFailure: "retry"}, 400, "on_failure"},
		{"window", api.RolloutRequest{All: true, Window: "sunday"}, 400, "window"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, call := range []func() error{
				func() error { _, err := c.RolloutPlan(ctx, tc.req); return err },
				func() error { _, err := c.StartRollout(ctx, tc.req); return err },
			} {
				var se *api.StatusError
				if err := call(); !errors.As(err, &se) || se.Code != tc.code || se.Body.Field != tc.field {
					t.Fatalf("got %v, want %d naming %s", err, tc.code, tc.field)
				}
			}
		})
	}
	// A host already in maintenance is a blocker: start refuses (409,
	// force) and changes nothing.
	if _, err := c.Maintenance(ctx, hosts[0], api.MaintenanceRequest{Status: "enable"}); err != nil {
		t.Fatal(err)
	}
	p, err := c.RolloutPlan(ctx, api.RolloutRequest{All: true})
	if err != nil || p.OK {
		t.Fatalf("plan with a host in maintenance: %+v, %v", p, err)
	}
	var se *api.StatusError
	if _, err := c.StartRollout(ctx, api.RolloutRequest{All: true}); !errors.As(err, &se) || se.Code != 409 || se.Body.Field != "force" || len(se.Body.Blockers) == 0 {
		t.Fatalf("start with blockers: %v", err)
	}
	if rs, _ := c.Rollouts(ctx); len(rs) != 0 {
		t.Fatalf("refused requests left rollouts: %+v", rs)
	}
	// continue of an unknown rollout or host names it.
	for _, tc := range []struct{ id, host, field string }{{"ro-nope", hosts[1], "rollout"}, {"", "", "host"}} {
		id := tc.id
		if id == "" {
			r, err := c.StartRollout(ctx, api.RolloutRequest{Hosts: hosts[1:2]})
			if err != nil {
				t.Fatal(err)
			}
			id = r.ID
		}
		if _, err := c.ContinueRollout(ctx, id, tc.host); !errors.As(err, &se) || se.Body.Field != tc.field {
			t.Fatalf("continue %s %q: %v", id, tc.host, err)
		}
	}
}

// TestRolloutMoveBack: with move_back, the VMs that left a host for its
// maintenance are back on it when its step is done, in the power state
// they had.
func TestRolloutMoveBack(t *testing.T) {
	dev, c := startDevWith(t, 2, 6, nil, rolloutPolicy())
	ctx := context.Background()
	host := dev.Sim.HostNames()[0]
	before, err := c.VMs(ctx, host)
	if err != nil || len(before) == 0 {
		t.Fatalf("VMs of %s: %v %v", host, before, err)
	}
	r, err := c.StartRollout(ctx, api.RolloutRequest{Hosts: []string{host}, MoveBack: true})
	if err != nil {
		t.Fatal(err)
	}
	waitRollout(t, c, r.ID, 30*time.Second, host+" in its work", func(r *api.Rollout) bool { return phaseOf(r, host) == "working" })
	if vms, _ := c.VMs(ctx, host); len(vms) != 0 {
		t.Fatalf("%d VMs still on %s in its work", len(vms), host)
	}
	if _, err := c.ContinueRollout(ctx, r.ID, host); err != nil {
		t.Fatal(err)
	}
	if r = waitRollout(t, c, r.ID, 60*time.Second, "rollout to end", ended); r.State != "succeeded" {
		t.Fatalf("rollout: %+v", r)
	}
	testutil.WaitFor(t, 20*time.Second, "the VMs back on "+host, func() bool {
		after, err := c.VMs(ctx, host)
		if err != nil || len(after) != len(before) {
			return false
		}
		power := map[string]api.PowerState{}
		for _, vm := range after {
			power[vm.ID] = vm.Power
		}
		for _, vm := range before {
			if p, ok := power[vm.ID]; !ok || p != vm.Power {
				return false
			}
		}
		return true
	})
}
