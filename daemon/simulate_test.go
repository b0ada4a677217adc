package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/placement"
	"github.com/herd-project/herd/policy/plan"
)

// TestSimulateFailureMatchesCrash simulates the failure of a dev host, then
// really crashes it, and compares: the recovery has the same VMs in the
// same order, starts them in the order and on the hosts the simulation
// said, and blocks the same VMs (one excluded, one pinned to the host by a
// must rule); the shut-off VM is registered, not started. It holds with
// recreations one at a time and side by side.
func TestSimulateFailureMatchesCrash(t *testing.T) {
	// One at a time (each recreation placed after the one before landed),
	// and side by side (each placed with those before it in flight).
	for _, concurrency := range []int{1, policy.DefaultRecoveryParallel} {
		t.Run(fmt.Sprintf("concurrency %d", concurrency), func(t *testing.T) { simulateThenCrash(t, concurrency) })
	}
}

func simulateThenCrash(t *testing.T, concurrency int) {
	ctx := context.Background()
	dev, c := startDevWith(t, 4, 28, nil, func(p *policy.Document) {
		fastRecovery(p)
		p.Recovery.Concurrency = concurrency
	})
	victim := busiestHost(t, c).Name
	vms, _ := c.VMs(ctx, victim)
	var runningVMs []string
	stopped := ""
	for _, v := range vms {
		if v.Power == api.PoweredOn {
			runningVMs = append(runningVMs, v.Name)
		} else {
			stopped = v.Name
		}
	}
	slices.Sort(runningVMs)
	if stopped == "" || len(runningVMs) < 4 {
		t.Fatalf("host %s has %d running VMs and stopped %q: want 4 and one", victim, len(runningVMs), stopped)
	}
	pinned, excluded, high := runningVMs[0], runningVMs[1], runningVMs[len(runningVMs)-1]
	doc := *dev.Policy()
	doc.HostGroups = []policy.HostGroup{{Name: "victim", Hosts: []string{victim}}}
	doc.VMGroups = []policy.VMGroup{{Name: "pinned", VMs: []string{pinned}}, {Name: "keep", VMs: []string{excluded}}, {Name: "vip", VMs: []string{high}, Priority: 100}}
	doc.Rules = []policy.Rule{{Name: "stay-home", Type: policy.RuleVMHostAffinity, VMGroup: "pinned", HostGroup: "victim", Enforcement: policy.Must}}
	doc.Recovery.ExcludeVMGroups = []string{"keep"}
	y, err := doc.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApplyPolicy(ctx, y, "test"); err != nil {
		t.Fatal(err)
	}

	// Bad requests name the field and change nothing.
	var se *api.StatusError
	for _, bad := range []struct {
		hosts []string
		code  int
		field string
	}{
		{nil, 400, "hosts"},
		{[]string{victim, "nope"}, 404, "hosts[1]"},
		{[]string{victim, victim}, 400, "hosts[1]"},
	} {
		if _, err := c.SimulateFailure(ctx, bad.hosts); !errors.As(err, &se) || se.Code != bad.code || se.Body.Field != bad.field {
			t.Errorf("simulate %v: %v; want %d naming %s", bad.hosts, err, bad.code, bad.field)
		}
	}

	sim, err := c.SimulateFailure(ctx, []string{victim})
	if err != nil {
		t.Fatal(err)
	}
	if ops, _ := c.Operations(ctx, ""); len(ops) != 0 {
		t.Fatalf("the simulation started %d operations", len(ops))
	}
	byName := map[string]api.RecoveryStep{}
	var simOrder []string // VM names, item order
	var simStarts []string
	starts := map[int]string{}
	for _, s := range sim.Steps {
		byName[s.Name] = s
		simOrder = append(simOrder, s.Name)
		if s.Order > 0 {
			starts[s.Order] = s.Name + ">" + s.Target
		}
	}
	for i := 1; i <= len(starts); i++ {
		simStarts = append(simStarts, starts[i])
	}
	if s := byName[pinned]; s.Blocked != placement.ReasonVMHostAffinity || !strings.Contains(s.Why, "stay-home") {
		t.Errorf("pinned VM in the simulation: %+v", s)
	}
	if s := byName[excluded]; s.Blocked != plan.BlockedExcluded || s.Action != cluster.ActionAwaitHost {
		t.Errorf("excluded VM in the simulation: %+v", s)
	}
	if s := byName[stopped]; s.Action != cluster.ActionRegister || s.Target == "" || s.Order == 0 {
		t.Errorf("stopped VM in the simulation: %+v", s)
	}
	if simOrder[0] != high || !strings.HasPrefix(simStarts[0], high+">") {
		t.Errorf("the vip VM %s does not come first: %v", high, simStarts)
	}
	if sim.Blocked != 2 || sim.Recreated != len(runningVMs)-2 || sim.Registered != len(vms)-len(runningVMs) || sim.FailoverMin != doc.Failover.MinHostFailures {
		t.Errorf("simulation totals: %+v", sim)
	}

	t.Logf("simulated starts %v, blocked %d", simStarts, sim.Blocked)
	// Now the real thing.
	if err := c.DevHost(ctx, victim, true); err != nil {
		t.Fatal(err)
	}
	var op *api.Operation
	testutil.WaitFor(t, 60*time.Second, "the recovery to place every VM it can", func() bool {
		op = recoveryOf(t, c, victim)
		if op == nil {
			return false
		}
		for _, it := range op.Items {
			switch {
			case it.Action == cluster.ActionAwaitHost:
			case it.VM == byName[pinned].VM:
				if it.Error == "" {
					return false // not tried yet
				}
			case it.State != api.ItemDone:
				return false
			}
		}
		return true
	})
	var realOrder, realStarts []string
	var realBlocked []string
	names := map[string]string{}
	for _, it := range op.Items {
		names[it.VM] = it.Name
		realOrder = append(realOrder, it.Name)
		if it.State != api.ItemDone {
			realBlocked = append(realBlocked, it.Name)
		}
	}
	targets := map[string]string{}
	for _, it := range op.Items {
		targets[it.VM] = it.Target
	}
	for _, e := range queryEvents(t, c, api.EventQuery{Operation: op.ID}) {
		if e.Type == "step.started" && e.VM != byName[pinned].VM {
			realStarts = append(realStarts, names[e.VM]+">"+targets[e.VM])
		}
	}
	var simBlocked []string
	for _, s := range sim.Steps {
		if s.Blocked != "" {
			simBlocked = append(simBlocked, s.Name)
		}
	}
	slices.Sort(simBlocked)
	slices.Sort(realBlocked)
	if !slices.Equal(realOrder, simOrder) {
		t.Errorf("recovery steps %v, simulated %v", realOrder, simOrder)
	}
	if !slices.Equal(realStarts, simStarts) {
		t.Errorf("recovery started %v, simulated %v", realStarts, simStarts)
	}
	if !slices.Equal(realBlocked, simBlocked) {
		t.Errorf("recovery blocked %v, simulated %v", realBlocked, simBlocked)
	}
	if !hasEvent(queryEvents(t, c, api.EventQuery{Operation: op.ID}), "recovery.blocked", "stay-home") {
		t.Errorf("the pinned VM's block does not name its rule")
	}

	// The host is being recovered now: simulating it again says so.
	again, err := c.SimulateFailure(ctx, []string{victim})
	if err != nil {
		t.Fatal(err)
	}
	if h := again.Hosts[0]; h.Simulated || !strings.Contains(h.Note, op.ID) || len(again.Steps) != 0 {
		t.Errorf("simulating a host under recovery: %+v", again)
	}
}
