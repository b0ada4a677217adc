package daemon

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

// Maintenance without migrations closes a host and moves nothing: the host
// is never called empty, or ready, while its VMs run; once the last leaves,
// it is.
func TestMaintenanceWithoutMigrationsIsNotEmpty(t *testing.T) {
	_, c := startDevWith(t, 3, 12, nil, nil)
	ctx := context.Background()
	h := busiestHost(t, c)
	if h.RunningVMs == 0 {
		t.Fatalf("host %s runs no VM: %+v", h.Name, h)
	}
	ref, err := c.Maintenance(ctx, h.Name, api.MaintenanceRequest{Status: "enable", Migrate: "none"})
	if err != nil {
		t.Fatal(err)
	}
	waitOp(t, c, ref.Operation, 10*time.Second)
	got, err := c.Host(ctx, h.Name)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%d VMs still running", h.RunningVMs)
	if got.Maintenance != api.MaintenanceOn || got.Empty || !strings.Contains(got.MaintenanceNote, want) {
		t.Fatalf("host view: maintenance %s empty %v note %q, want on, not empty, %q", got.Maintenance, got.Empty, got.MaintenanceNote, want)
	}
	for _, e := range queryEvents(t, c, api.EventQuery{Host: h.Name}) {
		if strings.Contains(e.Message, "empty") || strings.Contains(e.Message, "ready") {
			t.Fatalf("event calls host %s with %d running VMs empty or ready: %s %s", h.Name, h.RunningVMs, e.Type, e.Message)
		}
		if e.Type == "maintenance.on" && !strings.Contains(e.Message, want) {
			t.Errorf("maintenance.on says %q, want %q", e.Message, want)
		}
	}

	// An operator moves the running VMs away: the host is then empty.
	vms, _ := c.VMs(ctx, h.Name)
	for _, vm := range vms {
		if vm.Power != api.PoweredOn {
			continue
		}
		ref, err := c.MigrateVM(ctx, vm.ID, api.MigrateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if op := waitOp(t, c, ref.Operation, 20*time.Second); op.State != api.OpSucceeded {
			t.Fatalf("move of %s: %+v", vm.Name, op)
		}
	}
	got, _ = c.Host(ctx, h.Name)
	if !got.Empty || !strings.Contains(got.MaintenanceNote, "empty and ready") {
		t.Fatalf("emptied host view: empty %v note %q", got.Empty, got.MaintenanceNote)
	}
	n := 0
	for _, e := range queryEvents(t, c, api.EventQuery{Host: h.Name}) {
		if e.Type == "maintenance.empty" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d maintenance.empty events for the emptied host, want 1", n)
	}
}

// A policy change wakes the balancer: turning automatic balancing on acts
// at once, not after the interval read before it (an hour here).
func TestPolicyChangeWakesBalancer(t *testing.T) {
	dev, c := startDevWith(t, 3, 12, nil, func(p *policy.Document) {
		p.Balancing.Mode, p.Balancing.Interval = policy.BalanceOff, time.Hour
		p.Placement.MemoryReserve = 0.5
	})
	ctx := context.Background()
	crowd(t, dev, c, 6)
	// The balancer has read the hour-long interval before the change.
	time.Sleep(200 * time.Millisecond)
	y := policyYAML(t, func(p *policy.Document) {
		p.Balancing.Mode, p.Balancing.Interval, p.Balancing.Threshold = policy.BalanceAutomatic, time.Hour, 0.05
		p.Placement.MemoryReserve = 0.5
	})
	if _, err := c.ApplyPolicy(ctx, y, "test"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "a balance operation right after the policy change", func() bool {
		ops, _ := c.Operations(ctx, "")
		for _, o := range ops {
			if o.Kind == api.OpBalance {
				return true
			}
		}
		return false
	})
}

// Every move is in the log of the host it leaves, the host it reaches and
// the VM; the VM's events can be asked by name.
func TestEveryHostsEventsShowArrivals(t *testing.T) {
	dev, c := startDevWith(t, 4, 16, nil, nil)
	ctx := context.Background()
	h := busiestHost(t, c)
	ref, err := c.Maintenance(ctx, h.Name, api.MaintenanceRequest{Status: "enable", Migrate: "active-only"})
	if err != nil {
		t.Fatal(err)
	}
	op := waitOp(t, c, ref.Operation, 30*time.Second)
	if op.State != api.OpSucceeded || op.Done == 0 {
		t.Fatalf("evacuation: %+v", *op)
	}
	arrived := map[string]int{}
	for _, it := range op.Items {
		arrived[it.Target]++
	}
	for _, host := range dev.Sim.HostNames() {
		if host == h.Name {
			continue
		}
		n := 0
		for _, e := range queryEvents(t, c, api.EventQuery{Host: host}) {
			if e.Type == "step.done" && e.Operation == op.ID {
				if e.Target != host || e.Host != h.Name {
					t.Errorf("arrival on %s logged as %s → %s: %s", host, e.Host, e.Target, e.Message)
				}
				n++
			}
		}
		if n != arrived[host] {
			t.Errorf("events --host %s shows %d arrivals, want %d", host, n, arrived[host])
		}
	}
	it := op.Items[0]
	byName := queryEvents(t, c, api.EventQuery{VM: it.Name})
	byID := queryEvents(t, c, api.EventQuery{VM: it.VM})
	if len(byName) == 0 || len(byName) != len(byID) {
		t.Fatalf("events --vm %s: %d events, by id %d", it.Name, len(byName), len(byID))
	}
}

// The failover hosts of recovery.reserved_host_group take no maintenance
// or balancing placements, but an operator's explicit target still works.
func TestReservedHostsGetNoPlacements(t *testing.T) {
	var spare string
	dev, c := startDevWith(t, 4, 16, nil, func(p *policy.Document) {
		p.HostGroups = []policy.HostGroup{{Name: "spare", Hosts: []string{"DC0_C0_H3"}}}
		p.Recovery.ReservedHostGroup = "spare"
		p.Balancing.Mode, p.Balancing.Interval, p.Balancing.Threshold = policy.BalanceRecommend, time.Hour, 0.01
	})
	spare = dev.Sim.HostNames()[3]
	ctx := context.Background()
	before, _ := c.VMs(ctx, spare)
	plan, err := c.BalancePlan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range plan.Moves {
		if m.To == spare {
			t.Errorf("balance plan moves %s to the reserved host %s", m.Name, spare)
		}
	}
	src := dev.Sim.HostNames()[0]
	ref, err := c.Maintenance(ctx, src, api.MaintenanceRequest{Status: "enable", Migrate: "all"})
	if err != nil {
		t.Fatal(err)
	}
	op := waitOp(t, c, ref.Operation, 30*time.Second)
	if op.State != api.OpSucceeded || op.Total == 0 {
		t.Fatalf("evacuation: %+v", *op)
	}
	for _, it := range op.Items {
		if it.Target == spare {
			t.Errorf("evacuation placed %s on the reserved host %s", it.Name, spare)
		}
	}
	if after, _ := c.VMs(ctx, spare); len(after) != len(before) {
		t.Errorf("reserved host %s went from %d to %d VMs", spare, len(before), len(after))
	}
	// An operator may still name it.
	vms, _ := c.VMs(ctx, dev.Sim.HostNames()[1])
	ref, err = c.MigrateVM(ctx, vms[0].ID, api.MigrateRequest{TargetHost: spare})
	if err != nil {
		t.Fatalf("explicit move to the reserved host: %v", err)
	}
	if op := waitOp(t, c, ref.Operation, 20*time.Second); op.State != api.OpSucceeded {
		t.Fatalf("explicit move to the reserved host: %+v", *op)
	}
}

// No balancing round while an evacuation works on the hosts of its group:
// automatic balancing waits for it to end, then balances.
func TestNoBalancingDuringEvacuation(t *testing.T) {
	pol := func(mode string) func(p *policy.Document) {
		return func(p *policy.Document) {
			p.Balancing.Mode, p.Balancing.Interval, p.Balancing.Threshold = mode, time.Second, 0.02
			p.Placement.MemoryReserve = 0.5
		}
	}
	dev, c := startDevWith(t, 4, 24, map[string]int{"RelocateVM_Task": 300}, pol(policy.BalanceRecommend))
	ctx := context.Background()
	crowd(t, dev, c, 8)
	ref, err := c.Maintenance(ctx, dev.Sim.HostNames()[3], api.MaintenanceRequest{Status: "enable", Migrate: "active-only"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApplyPolicy(ctx, policyYAML(t, pol(policy.BalanceAutomatic)), "test"); err != nil {
		t.Fatal(err)
	}
	balanced := func() (during, after int) {
		ops, _ := c.Operations(ctx, "")
		var evacEnd time.Time
		for _, o := range ops {
			if o.ID == ref.Operation {
				evacEnd = o.Updated
			}
		}
		for _, o := range ops {
			if o.Kind != api.OpBalance {
				continue
			}
			if evacEnd.IsZero() || o.Created.Before(evacEnd) {
				during++
			} else {
				after++
			}
		}
		return during, after
	}
	for {
		op, err := c.Operation(ctx, ref.Operation)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := balanced(); n > 0 {
			t.Fatalf("a balance operation started while evacuation %s was %s", ref.Operation, op.State)
		}
		if op.State.Terminal() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	testutil.WaitFor(t, 20*time.Second, "balancing once the evacuation ended", func() bool {
		during, after := balanced()
		return during == 0 && after > 0
	})
}

// A must rule the current placement breaks is found when the policy
// changes, reported (event, metric, first in the plan) and, in automatic
// mode, fixed at once.
func TestMustViolationReportedAndFixed(t *testing.T) {
	dev, c := startDevWith(t, 3, 9, nil, func(p *policy.Document) {
		p.Balancing.Mode, p.Balancing.Interval = policy.BalanceRecommend, time.Hour
	})
	ctx := context.Background()
	vms, _ := c.VMs(ctx, "")
	var vm api.VMView
	for _, v := range vms {
		if v.Power == api.PoweredOn {
			vm = v
			break
		}
	}
	rule := func(mode string) func(p *policy.Document) {
		return func(p *policy.Document) {
			p.Balancing.Mode, p.Balancing.Interval = mode, time.Hour
			p.HostGroups = []policy.HostGroup{{Name: "here", Hosts: []string{vm.Host}}}
			p.VMGroups = []policy.VMGroup{{Name: "it", VMs: []string{vm.Name}}}
			p.Rules = []policy.Rule{{Name: "not-here", Type: policy.RuleVMHostAntiAffinity, VMGroup: "it", HostGroup: "here", Enforcement: policy.Must}}
		}
	}
	if _, err := c.ApplyPolicy(ctx, policyYAML(t, rule(policy.BalanceRecommend)), "test"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "a rules.violated event", func() bool {
		for _, e := range queryEvents(t, c, api.EventQuery{VM: vm.ID}) {
			if e.Type == "rules.violated" && strings.Contains(e.Message, "not-here") {
				return true
			}
		}
		return false
	})
	if m := metricsText(t, dev.Server); !strings.Contains(m, "herd_rule_violations 1") {
		t.Fatalf("metric: %s", grepLines(m, "violations"))
	}
	plan, err := c.BalancePlan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Violations) != 1 || plan.Violations[0].VM != vm.ID || plan.Violations[0].Fix == "" ||
		len(plan.Moves) == 0 || plan.Moves[0].VM != vm.ID || plan.Moves[0].Rule != "not-here" {
		t.Fatalf("plan: violations %+v, moves %+v", plan.Violations, plan.Moves)
	}
	// Automatic mode fixes it first, without waiting for the hour.
	if _, err := c.ApplyPolicy(ctx, policyYAML(t, rule(policy.BalanceAutomatic)), "test"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the VM moved off the host the rule forbids", func() bool {
		st := dev.Node().FSM().State()
		return st.VMs[vm.ID].Host != vm.Host
	})
	testutil.WaitFor(t, 5*time.Second, "no violation left", func() bool {
		return strings.Contains(metricsText(t, dev.Server), "herd_rule_violations 0")
	})
}

// A host back from maintenance, empty, is the first target of balancing,
// and applying the plan leaves nothing for the next round to undo.
func TestReturningHostIsFilledFirst(t *testing.T) {
	dev, c := startDevWith(t, 6, 36, nil, func(p *policy.Document) {
		p.Balancing.Mode, p.Balancing.Interval, p.Balancing.Threshold = policy.BalanceRecommend, time.Hour, 0.1
	})
	ctx := context.Background()
	back := dev.Sim.HostNames()[5]
	for _, status := range []string{"enable", "disable"} {
		ref, err := c.Maintenance(ctx, back, api.MaintenanceRequest{Status: status, Migrate: "all"})
		if status == "disable" {
			ref, err = c.Maintenance(ctx, back, api.MaintenanceRequest{Status: status})
		}
		if err != nil {
			t.Fatal(err)
		}
		if op := waitOp(t, c, ref.Operation, 30*time.Second); op.State != api.OpSucceeded {
			t.Fatalf("maintenance %s: %+v", status, *op)
		}
	}
	if h, _ := c.Host(ctx, back); h.VMs != 0 || h.Admin != api.Available {
		t.Fatalf("returned host: %+v", h)
	}
	plan, err := c.BalancePlan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Moves) == 0 || plan.Moves[0].To != back || plan.SpreadAfter >= plan.SpreadBefore {
		t.Fatalf("plan: %+v; want the returned host %s first", plan, back)
	}
	ref, err := c.BalanceApply(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if op := waitOp(t, c, ref.Operation, 30*time.Second); op.State != api.OpSucceeded {
		t.Fatalf("balance: %+v", *op)
	}
	again, _ := c.BalancePlan(ctx)
	for _, m := range again.Moves {
		if m.From == back {
			t.Fatalf("next plan moves %s off the host just filled: %+v", m.Name, again.Moves)
		}
	}
}
