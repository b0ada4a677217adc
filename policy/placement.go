package policy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/herd-project/herd/cluster"
)

// Reasons a host is rejected as a target, in the order the filters run: a
// host is counted under the first filter it fails.
const (
	ReasonSameHost           = "same-host"             // the VM is already there
	ReasonExcluded           = "excluded"              // Options.Exclude names it
	ReasonOtherGroup         = "other-driver-or-group" // VMs move only within one driver and group
	ReasonAdminStatus        = "admin-status"          // not AVAILABLE (or NOT_ACCEPTING when allowed)
	ReasonMaintenance        = "maintenance"           // maintenance state is not off
	ReasonHealth             = "health"                // suspect, dead or fenced
	ReasonDisconnected       = "disconnected"          // the driver has no connection to it
	ReasonInsufficientMemory = "insufficient-memory"   // not enough free memory left
	ReasonTargetBusy         = "target-busy"           // Options.MaxInFlightTo moves already enter it
	ReasonUnknownHost        = "unknown-host"          // the named or source host is not in the state
)

// reason indexes the reason names so that filters count without maps.
type reason uint8

const (
	fits reason = iota
	rSameHost
	rExcluded
	rOtherGroup
	rAdminStatus
	rMaintenance
	rHealth
	rDisconnected
	rInsufficientMemory
	rTargetBusy
	rUnknownHost
	numReasons
)

var reasonNames = [numReasons]string{
	"", ReasonSameHost, ReasonExcluded, ReasonOtherGroup, ReasonAdminStatus, ReasonMaintenance,
	ReasonHealth, ReasonDisconnected, ReasonInsufficientMemory, ReasonTargetBusy, ReasonUnknownHost,
}

// Options tune one placement.
type Options struct {
	// MemoryReserve is the share of each host's memory kept free, 0 to <1
	// (default 0).
	MemoryReserve float64
	// AllowNotAccepting admits NOT_ACCEPTING hosts: set for an operator's
	// explicit migration, never for automatic placement.
	AllowNotAccepting bool
	// Exclude names hosts not to choose (previous failed targets, say).
	Exclude map[string]bool
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
		return &FieldError{Field: "memory_reserve", Msg: fmt.Sprintf("must be at least 0 and below 1, got %v", o.MemoryReserve)}
	}
	if o.MaxInFlightTo < 0 {
		return &FieldError{Field: "max_in_flight_to", Msg: fmt.Sprintf("must not be negative, got %d", o.MaxInFlightTo)}
	}
	return nil
}

// Placement is the outcome of placing one VM.
type Placement struct {
	// Host is the chosen target, "" when no host fits.
	Host string `json:"host"`
	// Rejections counts the hosts rejected, by reason.
	Rejections map[string]int `json:"rejections,omitempty"`
}

// Transient reports whether nothing fits only because feasible targets are
// at their concurrency limit: the VM should wait rather than fail.
func (p Placement) Transient() bool {
	return p.Host == "" && p.Rejections[ReasonTargetBusy] > 0
}

// Explain says where the VM goes or why it cannot go anywhere, such as
// "no target: 3 hosts insufficient-memory, 1 host maintenance" (most common
// reason first).
func (p Placement) Explain() string {
	if p.Host != "" {
		return "target " + p.Host
	}
	if len(p.Rejections) == 0 {
		return "no target: no hosts"
	}
	reasons := make([]string, 0, len(p.Rejections))
	for r := range p.Rejections {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool {
		ci, cj := p.Rejections[reasons[i]], p.Rejections[reasons[j]]
		if ci != cj {
			return ci > cj
		}
		return reasons[i] < reasons[j]
	})
	var b strings.Builder
	b.WriteString("no target: ")
	for i, r := range reasons {
		if i > 0 {
			b.WriteString(", ")
		}
		n := p.Rejections[r]
		unit := "hosts"
		if n == 1 {
			unit = "host"
		}
		fmt.Fprintf(&b, "%d %s %s", n, unit, r)
	}
	return b.String()
}

// memoryNeed is the memory a VM takes on its target: only a VM that will
// run there needs free memory.
func memoryNeed(vm *cluster.VM) int64 {
	if vm.Power == cluster.PoweredOn {
		return vm.MemoryBytes
	}
	return 0
}

// staticReason applies the filters that do not depend on memory or moves:
// whether h may take VMs from src at all.
func staticReason(h, src *cluster.Host, o *Options) reason {
	switch {
	case h.Name == src.Name:
		return rSameHost
	case o.Exclude[h.Name]:
		return rExcluded
	case h.Driver != src.Driver || h.Group != src.Group:
		return rOtherGroup
	case h.Admin != cluster.Available && !(o.AllowNotAccepting && h.Admin == cluster.NotAccepting):
		return rAdminStatus
	case h.Maintenance != cluster.MaintenanceOff:
		return rMaintenance
	case h.Health != cluster.HealthAlive && h.Health != cluster.HealthUnknown:
		return rHealth
	case h.Connection != cluster.Connected:
		return rDisconnected
	}
	return fits
}

// candidate is a host that passed the static filters, with what the dynamic
// filters and the scorer need.
type candidate struct {
	name      string
	free      int64 // usable memory minus running VMs minus reservations
	memory    float64
	inFlight  int
	preferred bool
}

// newCandidate sizes h for placement, counting the in-flight moves given.
func newCandidate(h *cluster.Host, usage map[string]cluster.HostUsage, moves hostLoad, o *Options) candidate {
	return candidate{
		name:      h.Name,
		free:      usable(h, o.MemoryReserve) - usage[h.Name].MemoryUsedBytes - moves.reserved,
		memory:    float64(h.MemoryBytes),
		inFlight:  moves.to,
		preferred: o.Prefer[h.Name],
	}
}

// usable is the memory of h that VMs may use.
func usable(h *cluster.Host, reserve float64) int64 {
	if reserve == 0 {
		return h.MemoryBytes
	}
	return int64(float64(h.MemoryBytes) * (1 - reserve))
}

// check applies the dynamic filters for a VM that needs need bytes.
func (c *candidate) check(need int64, o *Options) reason {
	if c.free < need {
		return rInsufficientMemory
	}
	if o.MaxInFlightTo > 0 && c.inFlight >= o.MaxInFlightTo {
		return rTargetBusy
	}
	return fits
}

// fraction is the share of the host's memory left free after placing need.
func (c *candidate) fraction(need int64) float64 {
	if c.memory <= 0 {
		return 0
	}
	return float64(c.free-need) / c.memory
}

// better reports whether a, leaving the share fa of its memory free after
// placing, beats b, leaving fb: preferred hosts first, then the most free
// memory as a share (spread), then the fewest moves already entering, then
// the name, so that the choice never depends on map order.
func better(a *candidate, fa float64, b *candidate, fb float64) bool {
	if a.preferred != b.preferred {
		return a.preferred
	}
	if fa != fb {
		return fa > fb
	}
	if a.inFlight != b.inFlight {
		return a.inFlight < b.inFlight
	}
	return a.name < b.name
}

// rejectionMap turns reason counts into a Placement's map.
func rejectionMap(counts *[numReasons]int) map[string]int {
	var m map[string]int
	for r := rSameHost; r < numReasons; r++ {
		if counts[r] > 0 {
			if m == nil {
				m = make(map[string]int, 4)
			}
			m[reasonNames[r]] = counts[r]
		}
	}
	return m
}

// Place chooses a target host for vm: a different host of the same driver
// and group as vm's host that passes every filter, scored for spread. usage
// is s.Usage(), computed once by the caller and kept up to date as it plans;
// l holds the in-flight moves (nil for none). Place reads its arguments and
// changes nothing: the caller reserves the move in l.
func Place(s *cluster.State, usage map[string]cluster.HostUsage, l *Ledger, vm *cluster.VM, o Options) Placement {
	src := s.Hosts[vm.Host]
	if src == nil {
		return Placement{Rejections: map[string]int{ReasonUnknownHost: 1}}
	}
	need := memoryNeed(vm)
	var counts [numReasons]int
	var best candidate
	var bestFrac float64
	found := false
	// In-flight moves only make a host worse (less free memory, more moves
	// in), so the ledger is consulted only for hosts that would beat the
	// best so far without it. Hosts that fit without their moves but not
	// with them are counted in the second loop.
	for _, h := range s.Hosts {
		if r := staticReason(h, src, &o); r != fits {
			counts[r]++
			continue
		}
		c := newCandidate(h, usage, hostLoad{}, &o)
		if c.free < need {
			counts[rInsufficientMemory]++
			continue
		}
		if found && !better(&c, c.fraction(need), &best, bestFrac) {
			continue
		}
		c = newCandidate(h, usage, l.load(h.Name), &o)
		if c.check(need, &o) != fits {
			continue
		}
		if f := c.fraction(need); !found || better(&c, f, &best, bestFrac) {
			best, bestFrac, found = c, f, true
		}
	}
	if l != nil {
		for name, moves := range l.hosts {
			h := s.Hosts[name]
			if h == nil || staticReason(h, src, &o) != fits || newCandidate(h, usage, hostLoad{}, &o).free < need {
				continue // counted above
			}
			c := newCandidate(h, usage, moves, &o)
			if r := c.check(need, &o); r != fits {
				counts[r]++
			}
		}
	}
	p := Placement{Rejections: rejectionMap(&counts)}
	if found {
		p.Host = best.name
	}
	return p
}

// PlaceOn checks whether vm may go to the one named host, with the same
// filters as Place. Host is set when it may.
func PlaceOn(s *cluster.State, usage map[string]cluster.HostUsage, l *Ledger, vm *cluster.VM, host string, o Options) Placement {
	src, h := s.Hosts[vm.Host], s.Hosts[host]
	if src == nil || h == nil {
		return Placement{Rejections: map[string]int{ReasonUnknownHost: 1}}
	}
	r := staticReason(h, src, &o)
	if r == fits {
		c := newCandidate(h, usage, l.load(host), &o)
		r = c.check(memoryNeed(vm), &o)
	}
	if r != fits {
		return Placement{Rejections: map[string]int{reasonNames[r]: 1}}
	}
	return Placement{Host: host}
}

// FreeMemory returns the memory in bytes still free for new VMs on h: its
// usable memory minus running VMs minus in-flight reservations. It can be
// negative on an overcommitted host.
func FreeMemory(h *cluster.Host, usage map[string]cluster.HostUsage, l *Ledger, o Options) int64 {
	return newCandidate(h, usage, l.load(h.Name), &o).free
}
