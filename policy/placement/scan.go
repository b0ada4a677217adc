package placement

import (
	"slices"

	"github.com/herd-project/herd/cluster"
)

// Among many hosts Place limits its scan, as Nomad's scheduler does: it
// stops once it has seen scanLimit hosts that fit and that nothing left
// unseen can outrank by preference or should-rule score. Every host it
// chooses has passed every filter, must rules included, and it answers
// that no host fits only after seeing them all; only the tie-break among
// the equally ranked hosts (the share of memory left free) is taken from
// a sample rather than from all of them. Variables so that tests can
// sample small clusters.
var (
	// scanAllHosts: states of up to this many hosts are scanned whole.
	scanAllHosts = 1024
	// scanLimit is how many top-ranked hosts that fit end the scan.
	scanLimit = 16
)

// sampled runs the limited scan. It returns true when it stopped early with
// a host; false when it saw every host, sc then holding the best (if any)
// and the tally every rejection, as the whole scan would.
func (sc *scan) sampled() bool {
	p := sc.p
	// The hosts that may rank above every other: the preferred ones and
	// those a should vm-affinity rule anchors. They are tried first.
	special := p.specialHosts()
	for _, h := range special {
		sc.try(h, true)
	}
	top := p.rules.topScore()
	if sc.found && (sc.best.preferred || sc.best.score > top) {
		return true
	}
	n := 0
	for _, h := range p.s.Hosts {
		if slices.Contains(special, h) {
			continue
		}
		if ok, score := sc.try(h, true); ok && score >= top {
			if n++; n >= scanLimit {
				return true
			}
		}
	}
	return false
}

// specialHosts returns the preferred hosts and the anchors of the should
// vm-affinity rules that the state holds, each once.
func (p *placer) specialHosts() []*cluster.Host {
	var out []*cluster.Host
	add := func(h *cluster.Host) {
		if h != nil && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	for name, ok := range p.o.Prefer {
		if ok {
			add(p.s.Hosts[name])
		}
	}
	if v := p.rules; v != nil {
		for i := range v.vms {
			if r := &v.vms[i]; !r.must && !r.anti {
				add(r.anchor)
			}
		}
	}
	return out
}

// topScore is the highest should-rule score a host other than the anchors
// of the should vm-affinity rules can have: every rule kept but those
// affinities, which only their anchor keeps.
func (v *RuleView) topScore() int {
	if v == nil {
		return 0
	}
	sum := v.hostWeight
	for i := range v.vms {
		r := &v.vms[i]
		switch {
		case r.must:
		case !r.anti && r.anchor != nil:
			sum -= r.weight
		default:
			sum += r.weight
		}
	}
	return sum
}
