package placement

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"path"
	"slices"
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/policytest"
)

// randomCase is a small random cluster with moves in flight and a random
// valid policy.
type randomCase struct {
	s *cluster.State
	l *Ledger
	d *policy.Document
}

func newRandomCase(r *rand.Rand) (randomCase, bool) {
	s := policytest.NewCluster(3+r.IntN(5), 32)
	names := s.HostNames()
	for _, n := range names {
		policytest.SetHost(s, n, func(h *cluster.Host) {
			h.Labels = map[string]string{"rack": fmt.Sprint("r", r.IntN(2))}
			h.MemoryBytes = (16 + 16*r.Int64N(3)) * policytest.GiB
			h.CPUs = 4 + r.IntN(12)
			if r.IntN(8) == 0 {
				h.Maintenance = cluster.MaintenanceEntering
			}
		})
	}
	for i := 0; i < 4+r.IntN(12); i++ {
		power := cluster.PoweredOn
		if r.IntN(5) == 0 {
			power = cluster.PoweredOff
		}
		vm := policytest.AddVM(s, fmt.Sprintf("%c%d", "vw"[r.IntN(2)], i), names[r.IntN(len(names))], 1+r.Int64N(6), power)
		vm.VCPUs = 1 + r.IntN(4)
	}
	l := NewLedger()
	vms := s.SortedVMs()
	for i := 0; i < r.IntN(4); i++ {
		vm := vms[r.IntN(len(vms))]
		l.Reserve(vm.ID, vm.Host, names[r.IntN(len(names))], MemoryNeed(vm))
	}
	d := policy.Default()
	d.Placement.Strategy = []string{policy.StrategySpread, policy.StrategyPack}[r.IntN(2)]
	d.Placement.CPUOvercommit = float64(r.IntN(3))
	d.HostGroups = []policy.HostGroup{{Name: "h0", Selector: map[string]string{"rack": "r0"}}, {Name: "h1", Hosts: pick(r, names)}}
	d.VMGroups = []policy.VMGroup{{Name: "g0", Pattern: "v*"}, {Name: "g1", VMs: pick(r, vmIDs(vms))}, {Name: "g2", Pattern: "w*"}}
	types := []string{policy.RuleVMAffinity, policy.RuleVMAntiAffinity, policy.RuleVMHostAffinity, policy.RuleVMHostAntiAffinity}
	for i := 0; i < 1+r.IntN(4); i++ {
		rule := policy.Rule{Name: fmt.Sprint("r", i), Type: types[r.IntN(4)], VMGroup: fmt.Sprint("g", r.IntN(3)), Enforcement: policy.Must}
		if hosts, _ := policy.RuleTypeHosts(rule.Type); hosts {
			rule.HostGroup = fmt.Sprint("h", r.IntN(2))
		}
		if r.IntN(3) == 0 {
			rule.Enforcement, rule.Weight = policy.Should, 1+r.IntN(100)
		}
		d.Rules = append(d.Rules, rule)
	}
	if r.IntN(3) == 0 {
		d.DisruptionBudgets = []policy.DisruptionBudget{{VMGroup: "g0", MaxMigrating: 1 + r.IntN(2)}}
	}
	y, err := d.YAML()
	if err != nil {
		panic(err)
	}
	if d, err = policy.Parse("random.yaml", y); err != nil {
		return randomCase{}, false // contradictory rules, say
	}
	return randomCase{s: s, l: l, d: d}, true
}

// pick returns a random non-empty subset of names, in order.
func pick(r *rand.Rand, names []string) []string {
	var out []string
	for _, n := range names {
		if r.IntN(2) == 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		out = names[:1]
	}
	return out
}

// vmIDs lists the ids of vms.
func vmIDs(vms []*cluster.VM) []string {
	out := make([]string, len(vms))
	for i, vm := range vms {
		out[i] = vm.ID
	}
	return out
}

// broken says which must rule placing vm on target breaks, or "", judged
// from the document alone (not from Compile).
func (rc randomCase) broken(vm *cluster.VM, target string) string {
	in := func(g string, vm *cluster.VM) bool {
		for _, vg := range rc.d.VMGroups {
			if vg.Name == g {
				m, _ := path.Match(vg.Pattern, vm.Name)
				return slices.Contains(vg.VMs, vm.ID) || vg.Pattern != "" && m
			}
		}
		return false
	}
	hostIn := func(g string, h *cluster.Host) bool {
		for _, hg := range rc.d.HostGroups {
			if hg.Name == g {
				sel := len(hg.Selector) > 0
				for k, v := range hg.Selector {
					sel = sel && h.Labels[k] == v
				}
				return slices.Contains(hg.Hosts, h.Name) || sel
			}
		}
		return false
	}
	h := rc.s.Hosts[target]
	for _, r := range rc.d.Rules {
		if r.Enforcement != policy.Must || !in(r.VMGroup, vm) {
			continue
		}
		counts := map[string]int{}
		for _, m := range rc.s.SortedVMs() {
			if m.ID == vm.ID || !in(r.VMGroup, m) {
				continue
			}
			mv, moving := rc.l.Move(m.ID)
			running := m.Power == cluster.PoweredOn
			switch r.Type {
			case policy.RuleVMAntiAffinity:
				if moving && (mv.To == target || running && mv.From == target) || !moving && running && m.Host == target {
					return fmt.Sprintf("%s: %s is there", r.Name, m.ID)
				}
			case policy.RuleVMAffinity:
				if moving {
					counts[mv.To]++
				} else if running && !closing(rc.s.Hosts[m.Host]) {
					counts[m.Host]++
				}
			}
		}
		switch r.Type {
		case policy.RuleVMHostAffinity, policy.RuleVMHostAntiAffinity:
			if hostIn(r.HostGroup, h) != (r.Type == policy.RuleVMHostAffinity) {
				return r.Name
			}
		case policy.RuleVMAffinity:
			anchor, most := "", 0
			for _, n := range slices.Sorted(maps.Keys(counts)) {
				if counts[n] > most {
					anchor, most = n, counts[n]
				}
			}
			if anchor != "" && anchor != target {
				return fmt.Sprintf("%s: the group is on %s", r.Name, anchor)
			}
		}
	}
	return ""
}

// overfull says whether target lacks the memory or vCPUs for vm.
func (rc randomCase) overfull(vm *cluster.VM, target string) bool {
	h, u := rc.s.Hosts[target], rc.s.Usage()[target]
	if h.MemoryBytes-u.MemoryUsedBytes-rc.l.Reserved(target) < MemoryNeed(vm) {
		return true
	}
	limit := rc.d.Placement.CPUOvercommit
	vcpus := u.VCPUsUsed + CPUNeed(vm)
	for _, m := range rc.s.SortedVMs() {
		if mv, ok := rc.l.Move(m.ID); ok && mv.To == target {
			vcpus += CPUNeed(m)
		}
	}
	return limit > 0 && float64(vcpus) > float64(h.CPUs)*limit
}

// TestMustRulesNeverBroken places every VM of random clusters under random
// policies, reserving each move as it goes: no placement, by Place or by
// PlaceOn to any host, breaks a must rule or overfills a host, and Place
// finds a host exactly when PlaceOn accepts one.
func TestMustRulesNeverBroken(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	rounds, placed := 0, 0
	for rounds < 400 {
		rc, ok := newRandomCase(r)
		if !ok {
			continue
		}
		rounds++
		c := Compile(rc.d, rc.s)
		o := Options{Policy: c, MaxInFlightTo: r.IntN(3)}
		for _, vm := range rc.s.SortedVMs() {
			usage := rc.s.Usage()
			p := Place(rc.s, usage, rc.l, vm, o)
			var accepted []string
			for _, n := range rc.s.HostNames() {
				on := PlaceOn(rc.s, usage, rc.l, vm, n, o)
				if on.Host == "" {
					continue
				}
				accepted = append(accepted, n)
				if why := rc.broken(vm, n); why != "" {
					t.Fatalf("round %d: PlaceOn(%s, %s) breaks %s", rounds, vm.ID, n, why)
				}
				if rc.overfull(vm, n) {
					t.Fatalf("round %d: PlaceOn(%s, %s) overfills it", rounds, vm.ID, n)
				}
			}
			if p.Host == "" {
				if len(accepted) > 0 {
					t.Fatalf("round %d: Place(%s) = %s, but PlaceOn accepts %v", rounds, vm.ID, p.Explain(), accepted)
				}
				continue
			}
			if !slices.Contains(accepted, p.Host) {
				t.Fatalf("round %d: Place(%s) = %s, which PlaceOn refuses", rounds, vm.ID, p.Host)
			}
			placed++
			rc.l.Reserve(vm.ID, vm.Host, p.Host, MemoryNeed(vm))
		}
	}
	if placed < 500 {
		t.Errorf("only %d placements in %d rounds: the cases are too constrained to test much", placed, rounds)
	}
}

// TestPlaceMatchesFleetWithRules checks Place, which sizes only the hosts
// that could win with their moves, against the fleet the precheck uses,
// which sizes every host, under random policies.
func TestPlaceMatchesFleetWithRules(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 3))
	for rounds := 0; rounds < 300; {
		rc, ok := newRandomCase(r)
		if !ok {
			continue
		}
		rounds++
		rc.d.DisruptionBudgets = nil // the fleet plans capacity, not timing
		o := Options{Policy: Compile(rc.d, rc.s), MaxInFlightTo: r.IntN(3)}
		for _, vm := range rc.s.SortedVMs() {
			// The fleet treats its source as leaving; so does Place for a
			// host entering maintenance.
			policytest.SetHost(rc.s, vm.Host, func(h *cluster.Host) { h.Maintenance = cluster.MaintenanceEntering })
			usage := rc.s.Usage()
			got := Place(rc.s, usage, rc.l, vm, o)
			f := newFleet(rc.s, usage, rc.l, rc.s.Hosts[vm.Host], "", o)
			_, want := f.pick(vm)
			if got.Host != want.Host {
				t.Fatalf("round %d, %s: Place = %+v, fleet = %+v", rounds, vm.ID, got, want)
			}
			if want.Host == "" && !maps.Equal(got.Rejections, want.Rejections) {
				t.Fatalf("round %d, %s: Place rejections %v, fleet %v", rounds, vm.ID, got.Rejections, want.Rejections)
			}
		}
	}
}

// TestLimitedScanKeepsRules places every VM of random clusters under random
// policies with the limited scan forced on (any number of hosts, one
// top-ranked host ends it) and compares it with the whole scan: it finds a
// host exactly when the whole scan does, the host it finds breaks no must
// rule and is not overfull, and it ranks as high by preference and by
// should-rule score as the whole scan's choice.
func TestLimitedScanKeepsRules(t *testing.T) {
	all, limit := scanAllHosts, scanLimit
	t.Cleanup(func() { scanAllHosts, scanLimit = all, limit })
	place := func(s *cluster.State, usage map[string]cluster.HostUsage, l *Ledger, vm *cluster.VM, o Options, limited bool) Placement {
		scanAllHosts, scanLimit = all, limit
		if limited {
			scanAllHosts, scanLimit = 0, 1
		}
		return Place(s, usage, l, vm, o)
	}
	r := rand.New(rand.NewPCG(18, 1))
	rounds, placed, differ := 0, 0, 0
	for rounds < 400 {
		rc, ok := newRandomCase(r)
		if !ok {
			continue
		}
		rounds++
		o := Options{Policy: Compile(rc.d, rc.s), MaxInFlightTo: r.IntN(3)}
		if names := rc.s.HostNames(); r.IntN(3) == 0 {
			o.Prefer = map[string]bool{names[r.IntN(len(names))]: true}
		}
		for _, vm := range rc.s.SortedVMs() {
			usage := rc.s.Usage()
			whole := place(rc.s, usage, rc.l, vm, o, false)
			got := place(rc.s, usage, rc.l, vm, o, true)
			if got.Host == "" || whole.Host == "" {
				if got.Host != whole.Host || !maps.Equal(got.Rejections, whole.Rejections) {
					t.Fatalf("round %d, %s: limited scan %+v, whole scan %+v", rounds, vm.ID, got, whole)
				}
				continue
			}
			if why := rc.broken(vm, got.Host); why != "" {
				t.Fatalf("round %d: limited scan puts %s on %s, breaking %s", rounds, vm.ID, got.Host, why)
			}
			if rc.overfull(vm, got.Host) || PlaceOn(rc.s, usage, rc.l, vm, got.Host, o).Host == "" {
				t.Fatalf("round %d: limited scan puts %s on %s, which PlaceOn refuses", rounds, vm.ID, got.Host)
			}
			rules := newPlacer(rc.s, usage, rc.l, vm, rc.s.Hosts[vm.Host], o).rules
			gh, wh := rc.s.Hosts[got.Host], rc.s.Hosts[whole.Host]
			if o.Prefer[got.Host] != o.Prefer[whole.Host] || rules.score(gh) != rules.score(wh) {
				t.Fatalf("round %d, %s: limited scan chose %s (preferred %v, score %d), whole scan %s (preferred %v, score %d)",
					rounds, vm.ID, got.Host, o.Prefer[got.Host], rules.score(gh), whole.Host, o.Prefer[whole.Host], rules.score(wh))
			}
			if got.Host != whole.Host {
				differ++
			}
			placed++
			rc.l.Reserve(vm.ID, vm.Host, got.Host, MemoryNeed(vm))
		}
	}
	if placed < 500 || differ == 0 {
		t.Errorf("%d placements in %d rounds, %d differing from the whole scan: the cases test too little", placed, rounds, differ)
	}
	t.Logf("%d placements, %d on another host than the whole scan's", placed, differ)
}
