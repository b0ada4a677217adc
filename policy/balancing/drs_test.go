package balancing

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/placement"
	"github.com/herd-project/herd/policy/policytest"
)

// A VM with a weight-100 should affinity to its host is not moved for a
// gain of 0.016; without the rule it is.
func TestBalanceKeepsShouldRules(t *testing.T) {
	s := policytest.NewCluster(3, 100)
	policytest.AddVMBytes(s, "stay", "h01", 16*policytest.GiB/10, cluster.PoweredOn)
	policytest.AddVM(s, "big", "h01", 30, cluster.PoweredOn)
	policytest.AddVM(s, "b2", "h02", 28, cluster.PoweredOn)
	policytest.AddVMBytes(s, "b3", "h03", 284*policytest.GiB/10, cluster.PoweredOn)
	pol := policy.BalancingPolicy{Strategy: policy.BalanceEven, Metric: policy.BalanceByMemory, Threshold: 0.01, MinGain: 0.01}
	for _, tc := range []struct {
		name, rules string
		moves       int
	}{
		{"no rule", "", 1},
		{"should weight 100", `host_groups: [{name: home, hosts: [h01]}]
vm_groups: [{name: pinned, vms: [stay]}]
rules:
  - {name: at-home, type: vm-host-affinity, vm_group: pinned, host_group: home, enforcement: should, weight: 100}
`, 0},
		{"should weight 1", `host_groups: [{name: home, hosts: [h01]}]
vm_groups: [{name: pinned, vms: [stay]}]
rules:
  - {name: at-home, type: vm-host-affinity, vm_group: pinned, host_group: home, enforcement: should, weight: 1}
`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{State: s, Policy: pol, Options: placement.Options{Policy: mustCompile(t, s, tc.rules)}}
			p := Compute(in)
			checkPlan(t, s, nil, in.Options, p)
			if len(p.Moves) != tc.moves {
				t.Fatalf("moves %+v (%s), want %d", p.Moves, p.Reason, tc.moves)
			}
			if tc.moves == 1 && (p.Moves[0].VM != "stay" || p.Moves[0].Gain < 0.0159 || p.Moves[0].Gain > 0.0161) {
				t.Fatalf("move %+v, want stay with a gain of 0.016", p.Moves[0])
			}
		})
	}
}

// driftSim runs automatic balancing rounds every interval on a drifting
// inventory (VMs growing, shrinking, stopping and starting), with a driven
// clock, applying each plan at once. It counts the moves and the
// ping-pongs: a VM moved back to a host it left within the window.
type driftSim struct {
	s      *cluster.State
	pol    policy.BalancingPolicy
	now    time.Time
	moved  map[string]time.Time
	left   map[string]map[string]time.Time // VM → host it left → when
	rng    *rand.Rand
	moves  int
	pongs  int // back to a host left within window
	back   int // back to a host left at any time
	window time.Duration
}

func newDriftSim(s *cluster.State, pol policy.BalancingPolicy, seed uint64) *driftSim {
	return &driftSim{s: s, pol: pol, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), moved: map[string]time.Time{},
		left: map[string]map[string]time.Time{}, rng: rand.New(rand.NewPCG(seed, 7)), window: time.Hour}
}

// drift changes a few VMs: memory up or down by up to a quarter, or power.
func (d *driftSim) drift(n int) {
	ids := make([]string, 0, len(d.s.VMs))
	for id := range d.s.VMs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for range n {
		id := ids[d.rng.IntN(len(ids))]
		policytest.SetVM(d.s, id, func(vm *cluster.VM) {
			switch d.rng.IntN(4) {
			case 0:
				if vm.Power == cluster.PoweredOn {
					vm.Power = cluster.PoweredOff
				} else {
					vm.Power = cluster.PoweredOn
				}
			default:
				f := 0.75 + d.rng.Float64()/2
				vm.MemoryBytes = max(policytest.GiB/2, int64(float64(vm.MemoryBytes)*f))
			}
		})
	}
}

// round plans with the clock and the moves so far, and applies the plan.
func (d *driftSim) round(t testing.TB, interval time.Duration) Plan {
	t.Helper()
	d.now = d.now.Add(interval)
	in := Input{State: d.s, Policy: d.pol, Moved: d.moved, Now: d.now}
	p := Compute(in)
	checkPlan(t, d.s, nil, in.Options, p)
	for _, m := range p.Moves {
		if at, ok := d.left[m.VM][m.To]; ok {
			d.back++
			if d.now.Sub(at) <= d.window {
				d.pongs++
			}
		}
		if d.left[m.VM] == nil {
			d.left[m.VM] = map[string]time.Time{}
		}
		d.left[m.VM][m.From] = d.now
		d.moved[m.VM] = d.now
		policytest.SetVM(d.s, m.VM, func(vm *cluster.VM) { vm.Host = m.To })
	}
	d.moves += len(p.Moves)
	return p
}

// No VM ping-pongs over 20 rounds of automatic balancing (a simulated
// hour, one round every 3 minutes) on a drifting inventory: the hold keeps
// a moved VM where it went. Without the hold, VMs go back and forth (and a
// hold of 15 or 30 minutes still lets 8 and 4 of them go back within the
// hour over these 5 hours).
func TestBalanceNoPingPongOnDriftingInventory(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hold      time.Duration
		wantPongs bool
	}{
		{"hold 1h (the default)", policy.DefaultBalanceHold, false},
		{"no hold", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pongs := 0
			for seed := uint64(1); seed <= 5; seed++ {
				s := policytest.Inventory(6, 10, 10, 256, seed)
				pol := policy.BalancingPolicy{Strategy: policy.BalanceEven, Metric: policy.BalanceByMemory, Threshold: 0.05, MinGain: 0.01, MaxMoves: 10, Hold: tc.hold}
				d := newDriftSim(s, pol, seed)
				for range 20 {
					d.drift(6)
					d.round(t, 3*time.Minute)
				}
				pongs += d.pongs
			}
			if tc.wantPongs && pongs == 0 {
				t.Fatalf("no ping-pong without a hold: the drift is too gentle to test anything")
			}
			if !tc.wantPongs && pongs > 0 {
				t.Fatalf("%d ping-pongs over 5 simulated hours with a hold of %s", pongs, tc.hold)
			}
		})
	}
}

// No balancing where an evacuation or recovery works: frozen hosts are
// neither sources nor targets, and the plan says why.
func TestBalanceFrozenHostsAndHeldVMs(t *testing.T) {
	s := policytest.Build(100, []int64{40, 25, 5}, []int64{20}, []int64{20}, []int64{20})
	pol := even(0.05)
	pol.Hold = 10 * time.Minute
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	frozen := map[string]string{}
	for _, h := range s.HostNames() {
		frozen[h] = "evacuate op-1 of host h04 under way"
	}
	p := Compute(Input{State: s, Policy: pol, Frozen: frozen, Now: now})
	if len(p.Moves) != 0 || !strings.Contains(p.Reason, "evacuate op-1 of host h04 under way") {
		t.Fatalf("plan while an evacuation works: %+v", p)
	}
	// vm002 (25 GiB) would go; moved 5 minutes ago, it is held.
	free := Compute(Input{State: s, Policy: pol, Now: now})
	held := Compute(Input{State: s, Policy: pol, Now: now, Moved: map[string]time.Time{"vm002": now.Add(-5 * time.Minute)}})
	if len(free.Moves) == 0 || free.Moves[0].VM != "vm002" {
		t.Fatalf("free plan: %+v", free.Moves)
	}
	for _, m := range held.Moves {
		if m.VM == "vm002" {
			t.Fatalf("held VM moved: %+v", held.Moves)
		}
	}
	later := Compute(Input{State: s, Policy: pol, Now: now.Add(6 * time.Minute), Moved: map[string]time.Time{"vm002": now.Add(-5 * time.Minute)}})
	if len(later.Moves) == 0 || later.Moves[0].VM != "vm002" {
		t.Fatalf("after the hold: %+v", later.Moves)
	}
}

// A host back from maintenance, empty, is filled first, with few moves,
// and the next round has nothing to undo.
func TestBalanceFillsAnEmptyHostFirst(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hosts [][]int64
	}{
		{"even cluster, one empty host", [][]int64{{16, 16, 8}, {16, 12, 8, 4}, {20, 12, 8}, {16, 16, 8}, {}}},
		{"uneven cluster, one empty host", [][]int64{{24, 16, 16, 8}, {16, 12, 8, 4}, {20, 8}, {16, 8}, {}}},
		{"two empty hosts", [][]int64{{24, 16, 16, 8}, {16, 12, 8, 4, 4}, {20, 8, 8}, {}, {}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := policytest.Build(100, tc.hosts...)
			pol := even(0.1)
			p := Compute(Input{State: s, Policy: pol})
			checkPlan(t, s, nil, placement.Options{}, p)
			if len(p.Moves) == 0 || p.After > pol.Threshold+balanceEps {
				t.Fatalf("plan %+v: the empty host must be filled", p)
			}
			empty := map[string]bool{}
			for _, h := range s.HostNames() {
				if s.Usage()[h].VMs == 0 {
					empty[h] = true
				}
			}
			if !empty[p.Moves[0].To] {
				t.Errorf("first move %+v does not go to an empty host %v", p.Moves[0], empty)
			}
			if p.SpreadAfter >= p.SpreadBefore {
				t.Errorf("spread (coefficient of variation) %.3f → %.3f", p.SpreadBefore, p.SpreadAfter)
			}
			if opt := bruteForceMoves(s, pol.Threshold, len(p.Moves)); opt < 0 || opt < len(p.Moves)-1 {
				t.Errorf("%d moves, brute force needs %d", len(p.Moves), opt)
			}
			again := Compute(Input{State: applyPlan(s, p), Policy: pol})
			if len(again.Moves) != 0 {
				t.Fatalf("next round moves again: %+v", again.Moves)
			}
		})
	}
}

// Power-saving packs hosts to the target utilisation, no further (memory
// and vCPUs per CPU), moves stopped VMs offline, and never lists a host as
// emptied (to power off) while a VM is registered on it.
func TestPowerSavingHeadroomAndStoppedVMs(t *testing.T) {
	s := policytest.NewCluster(6, 256)
	r := rand.New(rand.NewPCG(20, 20))
	for i := range 60 {
		vm := policytest.AddVM(s, fmt.Sprintf("vm%03d", i), s.HostNames()[i%6], 2+r.Int64N(12), cluster.PoweredOn)
		vm.VCPUs = 1 + r.IntN(4)
		if i%10 == 3 {
			vm.Power = cluster.PoweredOff
		}
	}
	policytest.AddVM(s, "pinned-stopped", "h06", 4, cluster.PoweredOff).Unmovable = "local disk"
	for _, tc := range []struct {
		name   string
		target float64
		within bool
	}{
		{"target 0.8", 0.8, true},
		{"no target", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := policy.BalancingPolicy{Strategy: policy.BalancePowerSave, TargetUtilisation: tc.target}
			p := Compute(Input{State: s, Policy: pol})
			checkPlan(t, s, nil, placement.Options{}, p)
			after := applyPlan(s, p)
			u := after.Usage()
			over := ""
			for _, h := range after.HostNames() {
				if mem, cpus := u[h].MemoryUsedBytes, u[h].VCPUsUsed; float64(mem) > 0.8*256*float64(policytest.GiB) || float64(cpus) > 0.8*64 {
					over = fmt.Sprintf("%s at %d GiB and %d vCPUs", h, mem/policytest.GiB, cpus)
				}
			}
			if tc.within && over != "" {
				t.Fatalf("packed beyond the target: %s", over)
			}
			if !tc.within && over == "" {
				t.Fatalf("without a target nothing is packed beyond 80%%: the case tests nothing")
			}
			offline := 0
			for _, m := range p.Moves {
				if m.Offline {
					offline++
				}
			}
			for _, h := range p.EmptyHosts {
				if n := u[h].VMs; n != 0 {
					t.Errorf("host %s listed as emptied with %d VMs registered", h, n)
				}
				if h == "h06" {
					t.Errorf("h06 holds a stopped VM that may not move: listed as emptied")
				}
			}
			if len(p.EmptyHosts) == 0 || offline == 0 {
				t.Fatalf("plan empties %v with %d offline moves: %s", p.EmptyHosts, offline, p.Reason)
			}
		})
	}
}

// A must rule the current placement breaks is reported and fixed before
// any balancing move: a vm-host anti-affinity added after placement, and
// two VMs of a must anti-affinity group on one host.
func TestBalanceFixesMustViolationsFirst(t *testing.T) {
	s := policytest.Build(100, []int64{10, 10, 10}, []int64{10, 10}, []int64{5}, []int64{5})
	c := mustCompile(t, s, `host_groups: [{name: old, hosts: [h01]}]
vm_groups: [{name: off-old, vms: [vm001]}, {name: apart, vms: [vm004, vm005]}]
rules:
  - {name: not-on-old, type: vm-host-anti-affinity, vm_group: off-old, host_group: old, enforcement: must}
  - {name: keep-apart, type: vm-anti-affinity, vm_group: apart, enforcement: must}
`)
	in := Input{State: s, Policy: even(0.5), Options: placement.Options{Policy: c}}
	if got := MustViolations(s, nil, c); len(got) != 3 {
		t.Fatalf("violations %+v, want vm001 on h01 and vm004, vm005 together on h02", got)
	}
	p := Compute(in)
	checkPlan(t, s, nil, in.Options, p)
	if len(p.Violations) != 2 || len(p.Moves) != 2 {
		t.Fatalf("plan: violations %+v, moves %+v; want vm001 and one of vm004/vm005 moved", p.Violations, p.Moves)
	}
	for i, m := range p.Moves {
		if m.Rule == "" || m.To == "" || m.To == m.From {
			t.Fatalf("move %d %+v does not fix a rule", i, m)
		}
	}
	if left := MustViolations(applyPlan(s, p), nil, c); len(left) != 0 {
		t.Fatalf("after the plan: %+v", left)
	}
	// A balancing plan with violations puts the fixes first.
	crowded := policytest.Build(100, []int64{40, 30, 10}, []int64{10, 10}, []int64{5}, []int64{5})
	in.State, in.Options.Policy, in.Policy = crowded, mustCompile(t, crowded, `host_groups: [{name: old, hosts: [h01]}]
vm_groups: [{name: off-old, vms: [vm003]}]
rules:
  - {name: not-on-old, type: vm-host-anti-affinity, vm_group: off-old, host_group: old, enforcement: must}
`), even(0.05)
	p = Compute(in)
	checkPlan(t, crowded, nil, in.Options, p)
	if len(p.Moves) < 2 || p.Moves[0].VM != "vm003" || p.Moves[0].Rule != "not-on-old" || p.Moves[1].Rule != "" {
		t.Fatalf("moves %+v: the fix comes first, then balancing", p.Moves)
	}
}

// A host that sheds VMs in a plan is not refilled by the same plan when
// it falls a little below the mean (the CPU shares of its VMs are coarse).
func TestBalanceDoesNotRefillItsSource(t *testing.T) {
	s := policytest.Build(256, []int64{4, 4, 4}, []int64{4, 4, 4}, []int64{4, 4, 4})
	for id := range s.VMs {
		policytest.SetVM(s, id, func(vm *cluster.VM) { vm.VCPUs = 2 })
	}
	pol := even(0.05)
	pol.Metric = policy.BalanceByCPU
	p := Compute(Input{State: s, Policy: pol, CPU: map[string]float64{"h01": 0.95, "h02": 0.1, "h03": 0.1}})
	checkPlan(t, s, nil, placement.Options{}, p)
	if len(p.Moves) == 0 {
		t.Fatalf("no moves off the busy host: %s", p.Reason)
	}
	for _, m := range p.Moves {
		if m.From != "h01" {
			t.Fatalf("moves %+v: only the busy host h01 sheds", p.Moves)
		}
	}
}
