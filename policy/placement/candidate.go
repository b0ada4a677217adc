package placement

import (
	"math"

	"github.com/herd-project/herd/cluster"
)

// MemoryNeed is the memory a VM takes on its target: only a VM that will
// run there needs free memory.
func MemoryNeed(vm *cluster.VM) int64 {
	if vm.Power == cluster.PoweredOn {
		return vm.MemoryBytes
	}
	return 0
}

// CPUNeed is the vCPUs a VM takes on its target under a CPU overcommit
// limit: those of a VM that will run there.
func CPUNeed(vm *cluster.VM) int {
	if vm.Power == cluster.PoweredOn {
		return vm.VCPUs
	}
	return 0
}

// inFlightCPUs sums, per target host, the vCPUs of the running VMs that l
// has moving there. It is nil when o sets no CPU limit: only the limit
// needs it.
func inFlightCPUs(s *cluster.State, l *Ledger, o *Options) map[string]int {
	if o.CPUOvercommit <= 0 || l.Total() == 0 {
		return nil
	}
	in := make(map[string]int, 8)
	for id, m := range l.moves {
		if vm := s.VMs[id]; vm != nil {
			if n := CPUNeed(vm); n > 0 {
				in[m.To] += n
			}
		}
	}
	return in
}

// StaticallyFits reports whether h passes the filters that do not depend on
// memory or moves: whether h may take VMs from src at all.
func StaticallyFits(h, src *cluster.Host, o *Options) bool { return staticReason(h, src, o) == fits }

// staticReason applies the filters that do not depend on memory or moves:
// whether h may take VMs from src at all.
func staticReason(h, src *cluster.Host, o *Options) reason {
	switch {
	case h.Name == src.Name:
		return rSameHost
	case o.Exclude[h.Name]:
		return rExcluded
	case o.Reserved[h.Name]:
		return rReserved
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

// rank is what the scorer compares hosts by.
type rank struct {
	name      string
	preferred bool
	score     int     // should rules: weights kept minus weights broken
	frac      float64 // share of memory free after placing
	inFlight  int     // moves entering
}

// candidate is a host that passed the static filters, with what the dynamic
// filters and the scorer need.
type candidate struct {
	rank
	host    *cluster.Host
	free    int64   // usable memory minus running VMs minus reservations
	memory  float64 // the host's memory
	cpuUsed int     // vCPUs of running VMs and of running VMs moving in
	cpuCap  float64 // vCPUs allowed: CPUs × overcommit, +Inf without a limit
}

// newCandidate sizes h for placement, counting the in-flight moves given
// and cpuIn vCPUs moving in.
func newCandidate(h *cluster.Host, usage map[string]cluster.HostUsage, moves hostLoad, cpuIn int, o *Options) candidate {
	var c candidate
	c.size(h, usage[h.Name], moves, cpuIn, o)
	return c
}

// size sets c to h with usage u, moves and cpuIn vCPUs moving in. It fills
// in place: Place sizes thousands of hosts per VM.
func (c *candidate) size(h *cluster.Host, u cluster.HostUsage, moves hostLoad, cpuIn int, o *Options) {
	*c = candidate{
		rank:   rank{name: h.Name, inFlight: moves.to, preferred: o.Prefer[h.Name]},
		host:   h,
		free:   Usable(h, o.MemoryReserve) - u.MemoryUsedBytes - moves.reserved,
		memory: float64(h.MemoryBytes),
		cpuCap: math.Inf(1),
	}
	if o.CPUOvercommit > 0 && h.CPUs > 0 {
		c.cpuUsed = u.VCPUsUsed + cpuIn
		c.cpuCap = float64(h.CPUs) * o.CPUOvercommit
	}
}

// Usable is the memory of h that VMs may use.
func Usable(h *cluster.Host, reserve float64) int64 {
	if reserve == 0 {
		return h.MemoryBytes
	}
	return int64(float64(h.MemoryBytes) * (1 - reserve))
}

// capacity checks room for a VM that needs need bytes and cpus vCPUs.
func (c *candidate) capacity(need int64, cpus int) reason {
	if c.free < need {
		return rInsufficientMemory
	}
	if float64(c.cpuUsed+cpus) > c.cpuCap {
		return rCPUOvercommit
	}
	return fits
}

// busy checks the per-target concurrency limit.
func (c *candidate) busy(o *Options) reason {
	if o.MaxInFlightTo > 0 && c.inFlight >= o.MaxInFlightTo {
		return rTargetBusy
	}
	return fits
}

// check applies capacity, then busy.
func (c *candidate) check(need int64, cpus int, o *Options) reason {
	if r := c.capacity(need, cpus); r != fits {
		return r
	}
	return c.busy(o)
}

// fraction is the share of the host's memory left free after placing need.
func (c *candidate) fraction(need int64) float64 {
	if c.memory <= 0 {
		return 0
	}
	return float64(c.free-need) / c.memory
}

// better reports whether a beats b: preferred hosts first, then the higher
// should-rule score, then the strategy — the larger share of memory left
// free (spread) or the smaller (pack) — then the fewest moves already
// entering, then the name, so that the choice never depends on map order.
func better(a, b *rank, pack bool) bool {
	if a.preferred != b.preferred {
		return a.preferred
	}
	if a.score != b.score {
		return a.score > b.score
	}
	if a.frac != b.frac {
		return (a.frac > b.frac) != pack
	}
	if a.inFlight != b.inFlight {
		return a.inFlight < b.inFlight
	}
	return a.name < b.name
}
