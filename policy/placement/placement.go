package placement

import (
	"fmt"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
)

// Reasons a host is rejected as a target, in the order the filters run: a
// host is counted under the first filter it fails.
const (
	ReasonSameHost           = "same-host"             // the VM is already there
	ReasonExcluded           = "excluded"              // Options.Exclude names it
	ReasonReserved           = "reserved-failover"     // Options.Reserved names it: kept for recovery
	ReasonOtherGroup         = "other-driver-or-group" // VMs move only within one driver and group
	ReasonAdminStatus        = "admin-status"          // not AVAILABLE (or NOT_ACCEPTING when allowed)
	ReasonMaintenance        = "maintenance"           // maintenance state is not off
	ReasonHealth             = "health"                // suspect, dead or fenced
	ReasonDisconnected       = "disconnected"          // the driver has no connection to it
	ReasonVMHostAffinity     = "vm-host-affinity"      // a must rule keeps the VM in a host group it is not in
	ReasonVMHostAntiAffinity = "vm-host-anti-affinity" // a must rule keeps the VM out of a host group it is in
	ReasonVMAffinity         = "vm-affinity"           // a must rule keeps the VM with its group, which runs elsewhere
	ReasonVMAntiAffinity     = "vm-anti-affinity"      // a must rule keeps the VM apart from its group, which runs there
	ReasonInsufficientMemory = "insufficient-memory"   // not enough free memory left
	ReasonCPUOvercommit      = "cpu-overcommit"        // its vCPUs would exceed CPUs × cpu_overcommit
	ReasonDisruptionBudget   = "disruption-budget"     // the VM's group has max_migrating moves in flight: wait
	ReasonTargetBusy         = "target-busy"           // Options.MaxInFlightTo moves already enter it: wait
	ReasonUnknownHost        = "unknown-host"          // the named or source host is not in the state
)

// reason indexes the reason names so that filters count without maps.
type reason uint8

const (
	fits reason = iota
	rSameHost
	rExcluded
	rReserved
	rOtherGroup
	rAdminStatus
	rMaintenance
	rHealth
	rDisconnected
	rVMHostAffinity
	rVMHostAntiAffinity
	rVMAffinity
	rVMAntiAffinity
	rInsufficientMemory
	rCPUOvercommit
	rDisruptionBudget
	rTargetBusy
	rUnknownHost
	numReasons
)

var reasonNames = [numReasons]string{
	"", ReasonSameHost, ReasonExcluded, ReasonReserved, ReasonOtherGroup, ReasonAdminStatus, ReasonMaintenance,
	ReasonHealth, ReasonDisconnected, ReasonVMHostAffinity, ReasonVMHostAntiAffinity, ReasonVMAffinity,
	ReasonVMAntiAffinity, ReasonInsufficientMemory, ReasonCPUOvercommit, ReasonDisruptionBudget,
	ReasonTargetBusy, ReasonUnknownHost,
}

// Options tune one placement.
type Options struct {
	// MemoryReserve is the share of each host's memory kept free, 0 to <1
	// (default 0, or the policy's).
	MemoryReserve float64
	// CPUOvercommit, above zero, caps the vCPUs of running VMs on a host at
	// its CPUs times this ratio (0: no limit, or the policy's).
	CPUOvercommit float64
	// Strategy is StrategySpread or StrategyPack ("": the policy's, else
	// spread).
	Strategy string
	// Policy, when set, adds the compiled policy's rules (must rules as
	// filters, should rules as scores) and disruption budgets, and supplies
	// the three fields above when they are zero.
	Policy *Compiled
	// AllowNotAccepting admits NOT_ACCEPTING hosts: set for an operator's
	// explicit migration, never for automatic placement.
	AllowNotAccepting bool
	// Exclude names hosts not to choose (previous failed targets, say).
	Exclude map[string]bool
	// Reserved names the failover hosts (recovery.reserved_host_group):
	// automatic placements (maintenance, balancing, a move without a
	// target) leave them out, as vSphere HA's dedicated failover hosts.
	// Recovery and an operator's explicit target clear it.
	Reserved map[string]bool
	// Prefer names hosts that win over any other feasible host.
	Prefer map[string]bool
	// MaxInFlightTo, when above zero, rejects hosts that already receive
	// that many moves (the per-target concurrency limit) as target-busy: a
	// rejection that passes once a move finishes.
	MaxInFlightTo int
}

// Validate checks the options, naming the field at fault.
func (o Options) Validate() error {
	if !(o.MemoryReserve >= 0 && o.MemoryReserve < 1) {
		return &policy.FieldError{Field: "memory_reserve", Msg: fmt.Sprintf("must be at least 0 and below 1, got %v", o.MemoryReserve)}
	}
	if !(o.CPUOvercommit >= 0) {
		return &policy.FieldError{Field: "cpu_overcommit", Msg: fmt.Sprintf("must be 0 (no limit) or more, got %v", o.CPUOvercommit)}
	}
	if o.Strategy != "" && o.Strategy != policy.StrategySpread && o.Strategy != policy.StrategyPack {
		return &policy.FieldError{Field: "strategy", Msg: fmt.Sprintf("must be spread or pack, got %q", o.Strategy)}
	}
	if o.MaxInFlightTo < 0 {
		return &policy.FieldError{Field: "max_in_flight_to", Msg: fmt.Sprintf("must not be negative, got %d", o.MaxInFlightTo)}
	}
	return nil
}

// Resolved fills the zero placement settings from the policy.
func (o Options) Resolved() Options {
	if p := o.Policy; p != nil {
		pp := p.doc.Placement
		if o.MemoryReserve == 0 {
			o.MemoryReserve = pp.MemoryReserve
		}
		if o.CPUOvercommit == 0 {
			o.CPUOvercommit = pp.CPUOvercommit
		}
		if o.Strategy == "" {
			o.Strategy = pp.Strategy
		}
	}
	return o
}

// placer places one VM: the filters and scores that do not change from
// host to host, computed once.
type placer struct {
	tally
	s     *cluster.State
	usage map[string]cluster.HostUsage
	l     *Ledger
	src   *cluster.Host
	o     Options
	need  int64
	cpus  int
	cpuIn map[string]int // vCPUs moving in, per host; nil without a CPU limit
	rules *RuleView
	pack  bool
}

// newPlacer prepares the placement of vm from src: options resolved, the
// vCPUs moving in, the rules and the budget.
func newPlacer(s *cluster.State, usage map[string]cluster.HostUsage, l *Ledger, vm *cluster.VM, src *cluster.Host, o Options) *placer {
	o = o.Resolved()
	p := &placer{s: s, usage: usage, l: l, src: src, o: o, need: MemoryNeed(vm), cpus: CPUNeed(vm),
		pack: o.Strategy == policy.StrategyPack}
	p.cpuIn = inFlightCPUs(s, l, &p.o)
	p.rules = NewRuleView(o.Policy, s, l, vm, "")
	p.budget = p.rules.budgetSpent()
	return p
}

// filter applies the static filters and the must rules to h, counting a
// rejection.
func (p *placer) filter(h *cluster.Host) reason {
	if r := staticReason(h, p.src, &p.o); r != fits {
		p.add(r, "")
		return r
	}
	r, rule := p.rules.must(h)
	if r != fits {
		p.add(r, rule)
	}
	return r
}

// size sets c to h with moves in flight to it.
func (p *placer) size(c *candidate, h *cluster.Host, u cluster.HostUsage, moves hostLoad) {
	c.size(h, u, moves, p.cpuIn[h.Name], &p.o)
	c.frac = c.fraction(p.need)
}

// fit applies the dynamic filters: room, the disruption budget, the
// per-target limit.
func (p *placer) fit(c *candidate) reason {
	if r := c.capacity(p.need, p.cpus); r != fits {
		return r
	}
	if p.budget != "" {
		return rDisruptionBudget
	}
	return c.busy(&p.o)
}

// Place chooses a target host for vm: a different host of the same driver
// and group as vm's host that passes every filter — the static ones, the
// policy's must rules, memory, CPU overcommit, the disruption budget, the
// per-target limit — scored by the should rules, then by the strategy
// (spread or pack). Among more than scanAllHosts hosts the scan is limited
// (see placement_scan.go): the choice keeps every must rule, is ranked as
// high by preference and should rules as any host, and only its tie-break
// by the strategy comes from a sample. usage is s.Usage(), computed once by the caller and
// kept up to date as it plans; l holds the in-flight moves (nil for none).
// Place reads its arguments and changes nothing: the caller reserves the
// move in l.
func Place(s *cluster.State, usage map[string]cluster.HostUsage, l *Ledger, vm *cluster.VM, o Options) Placement {
	src := s.Hosts[vm.Host]
	if src == nil {
		return Placement{Rejections: map[string]int{ReasonUnknownHost: 1}}
	}
	p := newPlacer(s, usage, l, vm, src, o)
	// When spreading, in-flight moves only make a host worse (less free
	// memory, fewer vCPUs, more moves in), so the ledger is consulted only
	// for hosts that would beat the best so far without it; hosts that fit
	// without their moves but not with them are counted by countMoves.
	lazy := !p.pack && p.budget == "" && l.Total() > 0
	sc := scan{p: p, lazy: lazy}
	if len(s.Hosts) <= scanAllHosts {
		for _, h := range s.Hosts {
			sc.consider(h)
		}
	} else if sc.sampled() {
		return p.placement(sc.best.name)
	}
	if lazy {
		p.countMoves()
	}
	if sc.found {
		return p.placement(sc.best.name)
	}
	return p.placement("")
}

// scan is one pass of Place over candidate hosts, keeping the best.
type scan struct {
	p       *placer
	lazy    bool
	best, c candidate
	found   bool
}

// consider filters h and keeps it if it beats the best so far.
func (sc *scan) consider(h *cluster.Host) {
	sc.try(h, false)
}

// try is consider reporting whether h fits and, with full, its should-rule
// score (without full, a host that cannot beat the best is reported with
// score 0: its host-group rules are not read).
func (sc *scan) try(h *cluster.Host, full bool) (bool, int) {
	p, l := sc.p, sc.p.l
	if p.filter(h) != fits {
		return false, 0
	}
	u := p.usage[h.Name]
	var k rank // how h ranks: without its moves when lazy, a bound
	if sc.lazy {
		free := Usable(h, p.o.MemoryReserve) - u.MemoryUsedBytes
		if free < p.need {
			p.add(rInsufficientMemory, "")
			return false, 0
		}
		if p.o.CPUOvercommit > 0 && h.CPUs > 0 &&
			float64(u.VCPUsUsed+p.cpus) > float64(h.CPUs)*p.o.CPUOvercommit {
			// Memory is checked first: with the moves, it may not fit.
			if free-l.load(h.Name).reserved < p.need {
				p.add(rInsufficientMemory, "")
			} else {
				p.add(rCPUOvercommit, "")
			}
			return false, 0
		}
		k = rank{name: h.Name, preferred: p.o.Prefer[h.Name]}
		if h.MemoryBytes > 0 {
			k.frac = float64(free-p.need) / float64(h.MemoryBytes)
		}
	} else {
		p.size(&sc.c, h, u, l.load(h.Name))
		if r := p.fit(&sc.c); r != fits {
			p.add(r, "")
			return false, 0
		}
		k = sc.c.rank
	}
	// The should rules, host groups last and only for a host that could
	// win with every one of them kept (or when the full score is asked).
	k.score = p.rules.vmScore(h)
	if room := p.rules.hostRoom(); room > 0 {
		if sc.found && !full {
			k.score += room
			if !better(&k, &sc.best.rank, p.pack) {
				return true, 0
			}
			k.score -= room
		}
		k.score += p.rules.hostScore(h)
	}
	if sc.found && !full && !better(&k, &sc.best.rank, p.pack) {
		return true, 0
	}
	if sc.lazy {
		// The moves in flight only make h worse: size it with them.
		if p.size(&sc.c, h, u, l.load(h.Name)); p.fit(&sc.c) != fits {
			return false, 0
		}
	}
	sc.c.score = k.score
	if !sc.found || better(&sc.c.rank, &sc.best.rank, p.pack) {
		sc.best, sc.found = sc.c, true
	}
	return true, k.score
}

// countMoves counts the hosts that pass every filter without their
// in-flight moves but not with them.
func (p *placer) countMoves() {
	var c candidate
	for name, moves := range p.l.hosts {
		h := p.s.Hosts[name]
		if h == nil || staticReason(h, p.src, &p.o) != fits {
			continue
		}
		if r, _ := p.rules.must(h); r != fits {
			continue
		}
		u := p.usage[name]
		p.size(&c, h, u, hostLoad{})
		c.cpuUsed -= p.cpuIn[name]
		if c.capacity(p.need, p.cpus) != fits {
			continue
		}
		p.size(&c, h, u, moves)
		if r := p.fit(&c); r != fits {
			p.add(r, "")
		}
	}
}

// PlaceOn checks whether vm may go to the one named host, with the same
// filters as Place, must rules included: an operator's explicit target
// breaks no must rule either. Host is set when it may.
func PlaceOn(s *cluster.State, usage map[string]cluster.HostUsage, l *Ledger, vm *cluster.VM, host string, o Options) Placement {
	src, h := s.Hosts[vm.Host], s.Hosts[host]
	if src == nil || h == nil {
		return Placement{Rejections: map[string]int{ReasonUnknownHost: 1}}
	}
	p := newPlacer(s, usage, l, vm, src, o)
	if p.filter(h) != fits {
		return p.placement("")
	}
	var c candidate
	p.size(&c, h, usage[host], l.load(host))
	if r := p.fit(&c); r != fits {
		p.add(r, "")
		return p.placement("")
	}
	return Placement{Host: host}
}

// FreeMemory returns the memory in bytes still free for new VMs on h: its
// usable memory minus running VMs minus in-flight reservations. It can be
// negative on an overcommitted host.
func FreeMemory(h *cluster.Host, usage map[string]cluster.HostUsage, l *Ledger, o Options) int64 {
	o = o.Resolved()
	return newCandidate(h, usage, l.load(h.Name), 0, &o).free
}
