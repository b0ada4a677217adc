package balancing

import (
	"strings"
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/failover"
	"github.com/herd-project/herd/policy/placement"
	"github.com/herd-project/herd/policy/policytest"
)

// power is a power-saving policy.
func power(maxMoves int) policy.BalancingPolicy {
	return policy.BalancingPolicy{Strategy: policy.BalancePowerSave, MaxMoves: maxMoves}
}

// targetsOf lists p's moves as from>to.
func targetsOf(p Plan) string {
	out := make([]string, len(p.Moves))
	for i, m := range p.Moves {
		out[i] = m.From + ">" + m.To
	}
	return strings.Join(out, " ")
}

func TestPlanPowerSavingEmptiesLightestHosts(t *testing.T) {
	for _, c := range []struct {
		name    string
		reserve float64
		empty   string
		moves   string
	}{
		// Largest VM first, onto the most utilised host that takes it.
		{"no reserve", 0, "h01 h02", "h01>h04 h01>h04 h02>h04 h02>h04"},
		{"reserve 20%", 0.2, "h01 h02", "h01>h04 h01>h04 h02>h04 h02>h03"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := policytest.Build(100, []int64{5, 5}, []int64{10, 10}, []int64{25, 25}, []int64{30, 30})
			o := placement.Options{MemoryReserve: c.reserve}
			p := Compute(Input{State: s, Policy: power(0), Options: o})
			checkPlan(t, s, nil, o, p)
			if got := strings.Join(p.EmptyHosts, " "); got != c.empty || targetsOf(p) != c.moves {
				t.Fatalf("empty %q, moves %q; want %q, %q (%s)", got, targetsOf(p), c.empty, c.moves, p.Reason)
			}
			if p.Strategy != policy.BalancePowerSave || p.Reason != "" {
				t.Fatalf("plan %+v", p)
			}
			// Every running VM of an emptied host moves.
			after := applyPlan(s, p)
			for _, h := range p.EmptyHosts {
				if u := after.Usage()[h]; u.RunningVMs != 0 {
					t.Fatalf("%s keeps %d running VMs", h, u.RunningVMs)
				}
			}
			if got := memImbalance(after, "h03", "h04"); got != p.After {
				t.Fatalf("After %.4f, want %.4f over the hosts left", p.After, got)
			}
		})
	}
}

func TestPlanPowerSavingKeepsAHostPerGroup(t *testing.T) {
	s := policytest.Build(100, []int64{5}, []int64{10}, []int64{5}, []int64{10})
	for _, n := range []string{"h03", "h04"} {
		policytest.SetHost(s, n, func(h *cluster.Host) { h.Group = "g2" })
	}
	p := Compute(Input{State: s, Policy: power(0)})
	checkPlan(t, s, nil, placement.Options{}, p)
	if got := strings.Join(p.EmptyHosts, " "); got != "h01 h03" || targetsOf(p) != "h01>h02 h03>h04" {
		t.Fatalf("empty %q, moves %q", got, targetsOf(p))
	}
}

// TestPlanPowerSavingFailoverMin: four hosts of 100 GiB with 20 GiB each can
// lose three; emptying one leaves two, emptying two would leave one.
func TestPlanPowerSavingFailoverMin(t *testing.T) {
	s := policytest.Build(100, []int64{10, 10}, []int64{10, 10}, []int64{10, 10}, []int64{10, 10})
	if k := failover.Capacity(s, placement.Options{}); k != 3 {
		t.Fatalf("failover capacity %d, want 3", k)
	}
	for _, c := range []struct {
		min    int
		empty  string
		reason string
	}{
		{0, "h01 h02 h03", ""},
		{2, "h01", "emptying host h02 would drop the failover capacity to 1, below the minimum 2"},
		{3, "", "emptying host h01 would drop the failover capacity to 2, below the minimum 3"},
		{4, "", "failover capacity 3 is already below the minimum 4: no host may be emptied"},
	} {
		p := Compute(Input{State: s, Policy: power(0), FailoverMin: c.min})
		checkPlan(t, s, nil, placement.Options{}, p)
		if got := strings.Join(p.EmptyHosts, " "); got != c.empty || p.Reason != c.reason {
			t.Errorf("failover min %d: empty %q, reason %q; want %q, %q", c.min, got, p.Reason, c.empty, c.reason)
		}
		after := applyPlan(s, p)
		for _, h := range p.EmptyHosts { // powered off
			policytest.SetHost(after, h, func(h *cluster.Host) { h.Admin, h.Maintenance = cluster.InMaintenance, cluster.MaintenanceOn })
		}
		if k := failover.Capacity(after, placement.Options{}); k < c.min && c.empty != "" {
			t.Errorf("failover min %d: capacity after the plan %d", c.min, k)
		}
	}
}

func TestPlanPowerSavingMaxMoves(t *testing.T) {
	s := policytest.Build(100, []int64{5, 5}, []int64{10, 10}, []int64{25, 25}, []int64{30, 30})
	p := Compute(Input{State: s, Policy: power(3)})
	if got := strings.Join(p.EmptyHosts, " "); got != "h01" || len(p.Moves) != 2 {
		t.Fatalf("max_moves 3: empty %q, %d moves", got, len(p.Moves))
	}
	p = Compute(Input{State: s, Policy: power(1)})
	if len(p.EmptyHosts) != 0 || len(p.Moves) != 0 || p.Reason != "max_moves 1 leaves too few moves to empty more hosts" {
		t.Fatalf("max_moves 1: empty %v, moves %v, reason %q", p.EmptyHosts, p.Moves, p.Reason)
	}
}

func TestPlanPowerSavingSkipsPinnedAndBusyHosts(t *testing.T) {
	s := policytest.Build(100, []int64{5, 5}, []int64{10}, []int64{12}, []int64{30, 30}, []int64{})
	policytest.SetVM(s, "vm001", func(vm *cluster.VM) { vm.Unmovable = "local disk" })
	l := placement.NewLedger()
	l.Reserve("vm004", "h03", "h05", 12*policytest.GiB) // h03 and h05 have moves in flight
	policytest.AddVM(s, "stopped", "h02", 50, cluster.PoweredOff)
	p := Compute(Input{State: s, Ledger: l, Policy: power(0)})
	checkPlan(t, s, l, placement.Options{}, p)
	// h01 has an unmovable VM, h03 and h05 moves in flight: only h02 is
	// emptied, its stopped VM too (offline), onto the most utilised host.
	if got := strings.Join(p.EmptyHosts, " "); got != "h02" || targetsOf(p) != "h02>h04 h02>h04" || !p.Moves[1].Offline {
		t.Fatalf("empty %q, moves %q", got, targetsOf(p))
	}

	s = policytest.Build(100, []int64{50}, []int64{60})
	p = Compute(Input{State: s, Policy: power(0)})
	if len(p.EmptyHosts) != 0 || !strings.HasPrefix(p.Reason, "no host can be emptied") {
		t.Fatalf("nothing fits: empty %v, reason %q", p.EmptyHosts, p.Reason)
	}
}

func TestPlanPowerSavingListsEmptyHosts(t *testing.T) {
	s := policytest.Build(100, []int64{}, []int64{40}, []int64{30})
	p := Compute(Input{State: s, Policy: power(0)})
	// h01 is already empty: listed without moves; then h03 goes to h02.
	if got := strings.Join(p.EmptyHosts, " "); got != "h01 h03" || targetsOf(p) != "h03>h02" {
		t.Fatalf("empty %q, moves %q", got, targetsOf(p))
	}
}
