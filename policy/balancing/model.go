package balancing

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/placement"
)

// Roles a host takes in a plan.
const (
	roleSource  uint8 = 1 << iota // a planned move leaves it
	roleTarget                    // a planned move enters it
	roleEmptied                   // power-saving empties it
)

// bVM is a VM the balancer may move, with its load in the metric's units.
type bVM struct {
	vm   *cluster.VM
	load float64
	// rules are its should rules (nil for none), whose weights every move
	// counts (see shouldCost).
	rules *placement.RuleView
}

// bHost is a host that can take VMs, as the balancer sees it: capacity and
// load in the metric's units (bytes of memory, or busy CPUs), with in-flight
// moves counted as done.
type bHost struct {
	name  string
	h     *cluster.Host
	group *bGroup
	cap   float64
	load  float64
	// vms are the running VMs that may move: not Unmovable, not already
	// moving; largest load first.
	vms []bVM
	// pinned counts running VMs that may not move.
	pinned int
	// stopped are the stopped VMs registered on the host that may move
	// (offline); stoppedPinned counts those that may not. Power-saving
	// empties a host only with all of them gone.
	stopped       []bVM
	stoppedPinned int
	// vcpus is the vCPUs of its running VMs, planned moves included
	// (power-saving's headroom).
	vcpus int
	// busy is set when in-flight moves enter or leave the host.
	busy bool
	role uint8
	rnd  roundHost
}

// util is the host's utilisation, load over capacity.
func (h *bHost) util() float64 { return h.load / h.cap }

// bGroup is one driver and group: VMs move only within it.
type bGroup struct {
	key   string
	hosts []*bHost // least utilised first, then by name
	// stuck says why the evenly-distributed planner gave up on the group.
	stuck string
}

// balancer holds one planning run: the model, a copy of the ledger that
// planned moves are reserved in, and the placement options.
type balancer struct {
	s      *cluster.State
	usage  map[string]cluster.HostUsage
	ledger *placement.Ledger
	o      placement.Options
	pol    policy.BalancingPolicy
	metric string
	note   string // a fallback to report
	hosts  map[string]*bHost
	groups []*bGroup
	stamp  uint32 // of the last reachability search
	nHeld  int    // VMs held by the hold time
	// lowHosts counts the hosts of the round's group below its floor (the
	// mean less the threshold): packing fills them first.
	lowHosts int
}

// newBalancer builds the model of in.State for metric (memory or cpu).
func newBalancer(in Input, metric string) *balancer {
	s := in.State
	b := &balancer{
		s: s, usage: s.Usage(), ledger: in.Ledger.Clone(), o: in.Options,
		pol: in.Policy, metric: policy.BalanceByMemory, hosts: make(map[string]*bHost, len(s.Hosts)),
	}
	b.o.AllowNotAccepting, b.o.MaxInFlightTo = false, 0
	names := s.HostNames()
	for _, name := range names {
		h := s.Hosts[name]
		// A host can take VMs when it passes the static placement filters
		// for a VM of its own driver and group.
		peer := &cluster.Host{Driver: h.Driver, Group: h.Group}
		if why, frozen := in.Frozen[name]; frozen {
			if b.note == "" {
				b.note = why + ": no balancing on its hosts until it ends"
			}
			continue
		}
		if h.MemoryBytes > 0 && placement.StaticallyFits(h, peer, &b.o) {
			b.hosts[name] = &bHost{name: name, h: h}
		}
	}
	if metric == policy.BalanceByCPU {
		if missing := missingCPU(s, names, b.hosts, in.CPU); missing != "" {
			b.note = fmt.Sprintf("no cpu data for host %s: balanced by memory", missing)
		} else {
			b.metric = policy.BalanceByCPU
		}
	}
	cpu := in.CPU
	if b.metric != policy.BalanceByCPU {
		cpu = nil
	}
	for name, bh := range b.hosts {
		h := s.Hosts[name]
		if cpu != nil {
			bh.cap, bh.load = float64(h.CPUs), cpu[name]*float64(h.CPUs)
		} else {
			bh.cap, bh.load = float64(h.MemoryBytes), float64(b.usage[name].MemoryUsedBytes)
		}
	}
	for _, vm := range s.VMs {
		bh := b.hosts[vm.Host]
		if bh == nil {
			continue
		}
		if vm.Power != cluster.PoweredOn {
			if _, moving := in.Ledger.Move(vm.ID); moving || vm.Unmovable != "" {
				bh.stoppedPinned++
			} else {
				bh.stopped = append(bh.stopped, bVM{vm: vm})
			}
			continue
		}
		bh.vcpus += vm.VCPUs
		if _, moving := in.Ledger.Move(vm.ID); moving || vm.Unmovable != "" || b.held(in, vm.ID) {
			bh.pinned++
			continue
		}
		bh.vms = append(bh.vms, bVM{vm: vm, load: b.vmLoad(vm, vm.Host, "", cpu),
			rules: placement.NewRuleView(b.o.Policy, s, in.Ledger, vm, "")})
	}
	b.projectInFlight(in.Ledger, cpu)
	b.group(names)
	return b
}

// held reports whether the VM moved less than the policy's hold ago.
func (b *balancer) held(in Input, id string) bool {
	t, ok := in.Moved[id]
	if !ok || b.pol.Hold <= 0 {
		return false
	}
	if in.Now.Sub(t) < b.pol.Hold {
		b.nHeld++
		return true
	}
	return false
}

// shouldWeightCost is what one weight point of should rules broken by a
// move costs, in utilisation gain: a move that breaks a rule of weight 10
// (the default) must gain 0.1 more than min_gain, one of weight 100 can
// never gain enough.
const shouldWeightCost = 0.01

// shouldCost is what moving v from src to dst costs in should rules: the
// weights it breaks there that it keeps here, less those it newly keeps,
// in utilisation gain (never below 0: keeping a rule is no reason to move).
func shouldCost(v bVM, src, dst *bHost) float64 {
	if v.rules == nil {
		return 0
	}
	// keptWeight counts +w kept and -w broken: a rule that turns costs 2w.
	lost := v.rules.Score(src.h) - v.rules.Score(dst.h)
	return math.Max(0, float64(lost)/2*shouldWeightCost)
}

// missingCPU returns the first host (in order) that can take VMs but has no
// usable CPU utilisation or no CPUs, or "".
func missingCPU(s *cluster.State, names []string, hosts map[string]*bHost, cpu map[string]float64) string {
	for _, name := range names {
		if hosts[name] == nil {
			continue
		}
		v, ok := cpu[name]
		if !ok || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || s.Hosts[name].CPUs <= 0 {
			return name
		}
	}
	return ""
}

// vmLoad is what vm adds to a host, in the metric's units: its memory, or
// with cpu data its share of host's busy CPUs in proportion to its vCPUs
// among the host's running VMs. When host has no data (a VM moving in from
// a closed host) the share is estimated from fallback's busy CPUs per vCPU.
func (b *balancer) vmLoad(vm *cluster.VM, host, fallback string, cpu map[string]float64) float64 {
	if cpu == nil {
		return float64(vm.MemoryBytes)
	}
	for _, name := range []string{host, fallback} {
		h := b.s.Hosts[name]
		v, ok := cpu[name]
		if h == nil || !ok || math.IsNaN(v) || v < 0 {
			continue
		}
		if used := b.usage[name].VCPUsUsed; used > 0 {
			return v * float64(h.CPUs) * float64(vm.VCPUs) / float64(used)
		}
	}
	return 0
}

// projectInFlight counts the moves of the ledger as done: their VMs' load
// leaves the source and lands on the target. Hosts with moves in flight are
// marked busy.
func (b *balancer) projectInFlight(l *placement.Ledger, cpu map[string]float64) {
	for _, m := range l.Moves() { // sum in a fixed order
		vm := b.s.VMs[m.VM]
		if vm == nil || vm.Power != cluster.PoweredOn || vm.Host != m.From {
			continue // not running, or already on its target
		}
		w := b.vmLoad(vm, m.From, m.To, cpu)
		if from := b.hosts[m.From]; from != nil {
			from.load -= w
			from.busy = true
		}
		if to := b.hosts[m.To]; to != nil {
			to.load += w
			to.busy = true
		}
	}
}

// group sorts the hosts into their driver groups, each ordered by
// utilisation, and each host's VMs by load.
func (b *balancer) group(names []string) {
	byKey := map[string]*bGroup{}
	for _, name := range names {
		bh := b.hosts[name]
		if bh == nil {
			continue
		}
		h := b.s.Hosts[name]
		key := h.Driver + "/" + h.Group
		g := byKey[key]
		if g == nil {
			g = &bGroup{key: key}
			byKey[key] = g
			b.groups = append(b.groups, g)
		}
		bh.group = g
		g.hosts = append(g.hosts, bh)
		slices.SortFunc(bh.vms, compareLoad)
	}
	slices.SortFunc(b.groups, func(x, y *bGroup) int { return strings.Compare(x.key, y.key) })
	for _, g := range b.groups {
		slices.SortFunc(g.hosts, compareUtil)
	}
}

// compareLoad orders VMs by load, largest first, then as Order does.
func compareLoad(x, y bVM) int {
	if c := cmp.Compare(y.load, x.load); c != 0 {
		return c
	}
	return placement.CompareOrder(x.vm, y.vm)
}

// compareUtil orders hosts by utilisation, least first, then by name.
func compareUtil(x, y *bHost) int {
	if c := cmp.Compare(x.util(), y.util()); c != 0 {
		return c
	}
	return strings.Compare(x.name, y.name)
}

// reserve records a planned move of v from src to dst: in the planning
// ledger, so that later placements see it, and in the model's loads,
// keeping the group's hosts in utilisation order.
func (b *balancer) reserve(v bVM, src, dst *bHost) {
	b.ledger.Reserve(v.vm.ID, src.name, dst.name, placement.MemoryNeed(v.vm))
	b.shift(v.load, src, dst)
	src.vcpus -= placement.CPUNeed(v.vm)
	dst.vcpus += placement.CPUNeed(v.vm)
}

// unreserve undoes reserve.
func (b *balancer) unreserve(v bVM, src, dst *bHost) {
	b.ledger.Release(v.vm.ID)
	b.shift(v.load, dst, src)
	src.vcpus += placement.CPUNeed(v.vm)
	dst.vcpus -= placement.CPUNeed(v.vm)
}

// shift moves load w from one host to another of the same group.
func (b *balancer) shift(w float64, from, to *bHost) {
	g := from.group
	g.remove(from)
	g.remove(to)
	from.load -= w
	to.load += w
	g.insert(from)
	g.insert(to)
}

// remove takes h out of g's ordered hosts; h's load must not have changed
// since it was inserted.
func (g *bGroup) remove(h *bHost) {
	i, found := slices.BinarySearchFunc(g.hosts, h, compareUtil)
	if !found || g.hosts[i] != h {
		i = slices.Index(g.hosts, h)
	}
	g.hosts = slices.Delete(g.hosts, i, i+1)
}

// insert puts h into g's ordered hosts.
func (g *bGroup) insert(h *bHost) {
	i, _ := slices.BinarySearchFunc(g.hosts, h, compareUtil)
	g.hosts = slices.Insert(g.hosts, i, h)
}

// fitsOn reports whether v may move to dst under the placement filters
// (PlaceOn's: static filters, must rules, memory, CPU overcommit), with the
// in-flight and planned moves. Disruption budgets are about timing, not
// capacity, so a plan leaves them out, as evacuation prechecks do: the
// migration gate holds each move until its budget allows it. Hosts without
// the free memory are turned away first, without allocating.
func (b *balancer) fitsOn(v bVM, dst *bHost) bool {
	if placement.FreeMemory(dst.h, b.usage, b.ledger, b.o) < placement.MemoryNeed(v.vm) {
		return false
	}
	p := placement.PlaceOn(b.s, b.usage, b.ledger, v.vm, dst.name, b.o)
	return p.Host != "" || p.Rejections[placement.ReasonDisruptionBudget] > 0
}
