package policy

import (
	"fmt"
	"strconv"

	"github.com/herd-project/herd/cluster"
)

// fleet is the set of hosts that may take VMs from one source host, for
// placing many VMs in a row. It applies the static filters once and then
// keeps its own copy of each candidate's free memory and incoming moves,
// updated by take: a planning copy of usage and ledger, so that successive
// placements see the capacity earlier ones used.
type fleet struct {
	o      Options
	cands  []candidate
	static [numReasons]int
}

// newFleet gathers the targets for VMs leaving src. With only set, the named
// host is the sole candidate.
func newFleet(s *cluster.State, usage map[string]cluster.HostUsage, l *Ledger, src *cluster.Host, only string, o Options) *fleet {
	f := &fleet{o: o}
	add := func(h *cluster.Host) {
		if r := staticReason(h, src, &f.o); r != fits {
			f.static[r]++
			return
		}
		f.cands = append(f.cands, newCandidate(h, usage, l.load(h.Name), &f.o))
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

// pick returns the index of the best candidate for a VM needing need bytes,
// or -1 and the placement that explains why none fits.
func (f *fleet) pick(need int64) (int, Placement) {
	best, bestFrac := -1, 0.0
	for i := range f.cands {
		c := &f.cands[i]
		if c.check(need, &f.o) != fits {
			continue
		}
		if fr := c.fraction(need); best < 0 || better(c, fr, &f.cands[best], bestFrac) {
			best, bestFrac = i, fr
		}
	}
	if best >= 0 {
		return best, Placement{Host: f.cands[best].name}
	}
	counts := f.static
	for i := range f.cands {
		counts[f.cands[i].check(need, &f.o)]++
	}
	return -1, Placement{Rejections: rejectionMap(&counts)}
}

// take records a placement of need bytes on candidate i.
func (f *fleet) take(i int, need int64) {
	f.cands[i].free -= need
	f.cands[i].inFlight++
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
