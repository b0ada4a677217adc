package placement

import (
	"fmt"
	"strconv"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
)

// fleet is the set of hosts that may take VMs from one source host, for
// placing many VMs in a row. It applies the static filters once and then
// keeps its own copy of each candidate's free memory, vCPUs and incoming
// moves, updated by take: a planning copy of usage and ledger, so that
// successive placements see the capacity earlier ones used. With a policy
// it also records the planned moves in a copy of the ledger, so that the
// rules of later VMs see where earlier ones go. Disruption budgets and the
// per-target limit are about timing, not capacity: plans leave them out
// unless Options.MaxInFlightTo is set.
type fleet struct {
	s      *cluster.State
	plan   *Ledger // the ledger and the moves planned so far; nil without a policy
	src    *cluster.Host
	o      Options
	pack   bool
	cands  []candidate
	static [numReasons]int
}

// newFleet gathers the targets for VMs leaving src. With only set, the named
// host is the sole candidate.
func newFleet(s *cluster.State, usage map[string]cluster.HostUsage, l *Ledger, src *cluster.Host, only string, o Options) *fleet {
	o = o.Resolved()
	f := &fleet{s: s, src: src, o: o, pack: o.Strategy == policy.StrategyPack}
	if o.Policy != nil {
		f.plan = l.Clone()
	}
	cpuIn := inFlightCPUs(s, l, &f.o)
	add := func(h *cluster.Host) {
		if r := staticReason(h, src, &f.o); r != fits {
			f.static[r]++
			return
		}
		f.cands = append(f.cands, newCandidate(h, usage, l.load(h.Name), cpuIn[h.Name], &f.o))
	}
	if only != "" {
		if h := s.Hosts[only]; h != nil {
			add(h)
		} else {
			f.static[rUnknownHost]++
		}
		return f
	}
	f.cands = make([]candidate, 0, len(s.Hosts))
	for _, h := range s.Hosts {
		add(h)
	}
	return f
}

// pick returns the index of the best candidate for vm, or -1 and the
// placement that explains why none fits.
func (f *fleet) pick(vm *cluster.VM) (int, Placement) {
	need, cpus := MemoryNeed(vm), CPUNeed(vm)
	rules := NewRuleView(f.o.Policy, f.s, f.plan, vm, f.src.Name)
	best, bestRank := -1, rank{}
	for i := range f.cands {
		c := &f.cands[i]
		if c.check(need, cpus, &f.o) != fits {
			continue
		}
		k := c.rank
		if rules != nil {
			if r, _ := rules.must(c.host); r != fits {
				continue
			}
			k.score = rules.score(c.host)
		}
		k.frac = c.fraction(need)
		if best < 0 || better(&k, &bestRank, f.pack) {
			best, bestRank = i, k
		}
	}
	if best >= 0 {
		return best, Placement{Host: f.cands[best].name}
	}
	t := tally{counts: f.static}
	for i := range f.cands {
		c := &f.cands[i]
		r, rule := rules.must(c.host)
		if r == fits {
			r = c.check(need, cpus, &f.o)
		}
		t.add(r, rule)
	}
	return -1, t.placement("")
}

// take records the placement of vm on candidate i.
func (f *fleet) take(i int, vm *cluster.VM) {
	c := &f.cands[i]
	c.free -= MemoryNeed(vm)
	c.cpuUsed += CPUNeed(vm)
	c.inFlight++
	if f.plan != nil {
		f.plan.Reserve(vm.ID, vm.Host, c.name, MemoryNeed(vm))
	}
}

// staticDetail says why h fails the static filter r, with the value at fault.
func staticDetail(h, src *cluster.Host, r reason) string {
	switch r {
	case rSameHost:
		return "it is the host being evacuated"
	case rOtherGroup:
		return fmt.Sprintf("driver/group %s/%s, not %s/%s", h.Driver, h.Group, src.Driver, src.Group)
	case rAdminStatus:
		return "admin status " + string(h.Admin)
	case rMaintenance:
		return "maintenance state " + string(h.Maintenance)
	case rHealth:
		return "health " + string(h.Health)
	case rDisconnected:
		return "connection " + string(h.Connection)
	}
	return reasonNames[r]
}

// formatBytes writes a size in GiB (MiB below 1 GiB), as people read them.
func formatBytes(n int64) string {
	const mib, gib = 1 << 20, 1 << 30
	neg := ""
	if n < 0 {
		neg, n = "-", -n
	}
	if n < gib {
		return neg + strconv.FormatFloat(float64(n)/mib, 'f', 0, 64) + " MiB"
	}
	return neg + strconv.FormatFloat(float64(n)/gib, 'f', 1, 64) + " GiB"
}
