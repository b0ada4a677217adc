package balancing

import (
	"fmt"
	"math"
	"slices"

	"github.com/herd-project/herd/policy/placement"
)

// evenChoice is a single move the evenly-distributed planner falls back on.
type evenChoice struct {
	idx  int // in the source's vms
	dst  *bHost
	y    float64 // the target's utilisation after the move
	gain float64
}

// planEven fills p with evenly-distributed moves. See Compute.
func (b *balancer) planEven(p *Plan) {
	t := b.pol.Threshold
	if p.Before <= t+balanceEps {
		p.Reason = fmt.Sprintf("balanced: imbalance %.3f within threshold %.3f", p.Before, t)
		return
	}
	limit := b.moveLimit()
	for len(p.Moves) < limit {
		g := b.worstGroup(t)
		if g == nil {
			break
		}
		// A host far below the mean (empty, back from maintenance) is
		// filled from the most utilised hosts; when the hosts above the
		// mean are within the threshold, only that.
		if g.highGap() <= t+balanceEps {
			if !b.fill(p, g) {
				low := g.hosts[0]
				g.stuck = fmt.Sprintf("host %s at %s is below the mean by %.3f, and no VM fills it without undoing a move of this plan",
					low.name, percent(low.util()), g.lowGap())
			}
			continue
		}
		if b.round(p, g, limit) > 0 {
			continue
		}
		// No host above the line can be brought to it by moves that keep
		// their targets under it: one move that lowers the peak, even if
		// it lifts its target above the line, for the next round to fix.
		src := g.hosts[len(g.hosts)-1]
		c, why := b.evenMove(g, src)
		if c == nil {
			if g.lowGap() > t+balanceEps && b.fill(p, g) {
				continue
			}
			g.stuck = why
			continue
		}
		b.emit(p, src, c.idx, c.dst, c.gain)
	}
	after := b.imbalance()
	switch {
	case after <= t+balanceEps:
	case len(p.Moves) >= limit:
		p.Reason = fmt.Sprintf("max_moves %d reached with imbalance %.3f above threshold %.3f", limit, after, t)
	default:
		p.Reason = b.stuckReason()
	}
}

// worstGroup returns the group with the highest imbalance above t that the
// planner has not given up on, or nil.
func (b *balancer) worstGroup(t float64) *bGroup {
	var worst *bGroup
	worstImb := t + balanceEps
	for _, g := range b.groups {
		if g.stuck != "" || len(g.hosts) < 2 {
			continue
		}
		if imb := g.imbalance(); imb > worstImb {
			worst, worstImb = g, imb
		}
	}
	return worst
}

// stuckReason explains the worst group the planner gave up on.
func (b *balancer) stuckReason() string {
	var worst *bGroup
	for _, g := range b.groups {
		if g.stuck != "" && (worst == nil || g.imbalance() > worst.imbalance()) {
			worst = g
		}
	}
	if worst == nil {
		return ""
	}
	return "no gain: " + worst.stuck
}

// fillSources bounds the most utilised hosts fill looks at.
const fillSources = 8

// fill plans one move into the least utilised host of g that shed no VM
// in this plan, when it is below the mean by more than the threshold, from
// the most
// utilised host (of the fillSources most utilised) that has a VM for it: the lightest VM that brings it up to
// the mean less the threshold in one move, or else the heaviest. A move
// must raise the lower utilisation of its two hosts by min_gain and the
// should rules it breaks. It reports whether it planned one.
func (b *balancer) fill(p *Plan, g *bGroup) bool {
	// A host that shed VMs in this plan is not refilled: that would undo
	// the plan's own moves.
	i := slices.IndexFunc(g.hosts, func(h *bHost) bool { return h.role&roleSource == 0 })
	if i < 0 || g.hosts[i].util() >= g.mean()-b.pol.Threshold-balanceEps {
		return false
	}
	dst := g.hosts[i]
	xd := dst.util()
	deficit := (g.mean()-b.pol.Threshold)*dst.cap - dst.load
	minGain := math.Max(b.pol.MinGain, balanceEps)
	for i := len(g.hosts) - 1; i > 0 && i >= len(g.hosts)-fillSources; i-- {
		src := g.hosts[i]
		if src.util() <= xd+minGain {
			break
		}
		if src.role&roleTarget != 0 {
			continue // VMs just moved in do not move on
		}
		gain := func(v bVM) float64 { return math.Min(xd+v.load/dst.cap, src.util()-v.load/src.cap) - xd }
		ok := func(v bVM) bool { return gain(v) >= minGain+shouldCost(v, src, dst) && b.fitsOn(v, dst) }
		best := -1
		// The lightest VM that covers the deficit (VMs are heaviest first),
		// else the heaviest that may go; placement is asked only of the
		// candidates in that order.
		for j := len(src.vms) - 1; j >= 0 && best < 0; j-- {
			if src.vms[j].load >= deficit-balanceEps && ok(src.vms[j]) {
				best = j
			}
		}
		for j := 0; j < len(src.vms) && best < 0; j++ {
			if src.vms[j].load < deficit-balanceEps && ok(src.vms[j]) {
				best = j
			}
		}
		if best >= 0 {
			v := src.vms[best]
			b.emit(p, src, best, dst, math.Min(xd+v.load/dst.cap, src.util()-v.load/src.cap)-xd)
			return true
		}
	}
	return false
}

// planGreedy fills p with the simple plan: while the worst group's
// spread is above the threshold, the heaviest VM of its most utilised host
// that the least utilised host that takes any of them takes, when that
// gains min_gain and the should rules it breaks.
func (b *balancer) planGreedy(p *Plan) {
	t, limit := b.pol.Threshold, b.moveLimit()
	minGain := math.Max(b.pol.MinGain, balanceEps)
	for len(p.Moves) < limit {
		g := b.worstGroup(t)
		if g == nil {
			break
		}
		src := g.hosts[len(g.hosts)-1]
		c := b.greedyMove(g, src)
		if c == nil || c.gain < minGain+shouldCost(src.vms[c.idx], src, c.dst) {
			g.stuck = "no greedy move"
			continue
		}
		b.emit(p, src, c.idx, c.dst, c.gain)
	}
}

// greedyMove is the heaviest VM of src that the least utilised host of g
// (that shed no VM in this plan) taking any VM of src takes, with its
// gain; nil when there is none.
func (b *balancer) greedyMove(g *bGroup, src *bHost) *evenChoice {
	xa := src.util()
	for _, dst := range g.hosts {
		if dst == src || dst.util() >= xa || dst.role&roleSource != 0 {
			continue // a host that shed VMs in this plan takes none back
		}
		for i, v := range src.vms { // largest first
			if b.fitsOn(v, dst) {
				gain := xa - math.Max(xa-v.load/src.cap, dst.util()+v.load/dst.cap)
				return &evenChoice{idx: i, dst: dst, gain: gain}
			}
		}
		return nil // the least utilised host takes none of them
	}
	return nil
}

// evenMove chooses the single move off src, the most utilised host of g,
// that most lowers the higher utilisation of its two hosts (ties: the one
// leaving its target least utilised), or says why there is none.
func (b *balancer) evenMove(g *bGroup, src *bHost) (*evenChoice, string) {
	if len(src.vms) == 0 {
		return nil, fmt.Sprintf("host %s at %s has no running VM that may move (%d unmovable or already moving)",
			src.name, percent(src.util()), src.pinned)
	}
	xa := src.util()
	minGain := math.Max(b.pol.MinGain, balanceEps)
	var best *evenChoice
	var refused *bHost
	var refusedVM bVM
	targets := false
	for i, v := range src.vms {
		if i > 0 && v.load == src.vms[i-1].load && v.vm.MemoryBytes == src.vms[i-1].vm.MemoryBytes {
			continue // same sizes as the previous VM: same answer
		}
		dst, y, r := b.evenTarget(g, src, v)
		if dst == nil {
			if r != nil {
				refused, refusedVM = r, v
			}
			continue
		}
		targets = true
		gain := xa - math.Max(xa-v.load/src.cap, y)
		if gain < minGain || (best != nil && (gain < best.gain || (gain == best.gain && y >= best.y))) {
			continue
		}
		best = &evenChoice{idx: i, dst: dst, y: y, gain: gain}
	}
	switch {
	case best != nil:
		return best, ""
	case refused != nil && !targets:
		p := placement.PlaceOn(b.s, b.usage, b.ledger, refusedVM.vm, refused.name, b.o)
		return nil, fmt.Sprintf("no less utilised host can take a VM of host %s at %s (%s: %s)",
			src.name, percent(xa), refused.name, p.Explain())
	}
	return nil, fmt.Sprintf("no move off host %s at %s lowers the imbalance by min_gain %.3f",
		src.name, percent(xa), b.pol.MinGain)
}

// evenTarget returns the host of g, less utilised than src, where v leaves
// the lowest utilisation, with that utilisation; or nil and the last host
// that refused v.
func (b *balancer) evenTarget(g *bGroup, src *bHost, v bVM) (*bHost, float64, *bHost) {
	xa := src.util()
	var best, refused *bHost
	bestY := math.Inf(1)
	for _, h := range g.hosts {
		x := h.util()
		if x >= bestY || x >= xa {
			break // hosts are in utilisation order: none after does better
		}
		if h == src {
			continue
		}
		y := x + v.load/h.cap
		if y >= bestY {
			continue
		}
		// The should rules the move breaks count against its gain.
		if gain := xa - math.Max(xa-v.load/src.cap, y); gain < math.Max(b.pol.MinGain, balanceEps)+shouldCost(v, src, h) {
			continue
		}
		if !b.fitsOn(v, h) {
			refused = h
			continue
		}
		best, bestY = h, y
	}
	return best, bestY, refused
}

// emit records the move of src.vms[i] to dst.
func (b *balancer) emit(p *Plan, src *bHost, i int, dst *bHost, gain float64) {
	v := src.vms[i]
	b.reserve(v, src, dst)
	src.vms = slices.Delete(src.vms, i, i+1)
	src.role |= roleSource
	dst.role |= roleTarget
	p.Moves = append(p.Moves, Move{
		VM: v.vm.ID, Name: v.vm.Name, From: src.name, To: dst.name,
		MemoryBytes: v.vm.MemoryBytes, Gain: gain,
	})
}
