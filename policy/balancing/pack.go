package balancing

import (
	"cmp"
	"math"
	"slices"
	"strings"

	"github.com/herd-project/herd/policy/placement"
)

// roundHost is a host's scratch state during one packing round.
type roundHost struct {
	source  bool
	lineCap float64 // the most load that keeps it at or under the line
	floor   float64 // the load it lacks to reach the mean less the threshold
	plan    float64 // load after its evictions and the VMs packed onto it
	limit   float64 // the most load it may reach so that every VM packed onto it still gains min_gain
	shed    float64 // its largest VM another host takes under the line, at the start
	chained bool    // a VM too big for any room was packed onto it
	packed  []packedMove
	out     []*bHost // sources it sends VMs to: they must drain first
	seen    uint32   // stamp of the last reachability search that visited it
	done    bool     // emitted
}

// packedMove is an eviction that found a target.
type packedMove struct {
	v   bVM
	dst *bHost
}

// item is an eviction to pack, with the utilisation its source has when it
// leaves (its source's larger evictions gone first).
type item struct {
	v   bVM
	src *bHost
	xa  float64
}

// room is how much load h may still take in this round.
func (h *bHost) room() float64 {
	return math.Min(h.rnd.lineCap, h.rnd.limit) - h.rnd.plan
}

// compareRoom orders hosts by room, least first, then by name.
func compareRoom(x, y *bHost) int {
	if c := cmp.Compare(x.room(), y.room()); c != 0 {
		return c
	}
	return strings.Compare(x.name, y.name)
}

// round plans one round for g: every host above the line (mean plus
// threshold, or the highest utilisation that VMs that may not move already
// impose) chooses the fewest VMs, and among as few the least load, whose
// departure brings it to the line; all those VMs, largest first, are packed
// best-fit into the room under the line of the other hosts, drained sources
// included; the moves are then emitted source by source, a source that
// receives VMs draining before. It returns the number of moves emitted.
func (b *balancer) round(p *Plan, g *bGroup, limit int) int {
	minGain := math.Max(b.pol.MinGain, balanceEps)
	line := g.mean() + b.pol.Threshold
	for _, h := range g.hosts {
		pinned := h.load
		for _, v := range h.vms {
			if v.load/h.cap >= minGain {
				pinned -= v.load
			}
		}
		line = math.Max(line, pinned/h.cap)
	}
	maxRoom, floor := 0.0, g.mean()-b.pol.Threshold
	b.lowHosts = 0
	for _, h := range g.hosts {
		h.rnd = roundHost{lineCap: line * h.cap, plan: h.load, limit: math.Inf(1),
			floor: floor*h.cap - h.load}
		if h.rnd.floor > balanceEps {
			b.lowHosts++
		}
		maxRoom = math.Max(maxRoom, h.rnd.lineCap-h.load)
	}
	// A host under the line can make room for a VM too big for any host by
	// shedding its largest VM that another host takes.
	maxChain := maxRoom
	for _, h := range g.hosts {
		if room := h.rnd.lineCap - h.load; room >= 0 {
			for _, v := range h.vms {
				if v.load <= maxRoom+balanceEps && v.load >= minGain*h.cap {
					h.rnd.shed = v.load
					break
				}
			}
			maxChain = math.Max(maxChain, room+h.rnd.shed)
		}
	}
	var sources []*bHost
	var items []item
	for i := len(g.hosts) - 1; i >= 0 && g.hosts[i].util() > line+balanceEps; i-- {
		h := g.hosts[i]
		e := evictionSet(h.vms, h.load-h.rnd.lineCap, h.cap*minGain, maxRoom, maxChain)
		if len(e) == 0 {
			continue
		}
		h.rnd.source = true
		sources = append(sources, h)
		load := h.load
		for _, v := range e {
			items = append(items, item{v: v, src: h, xa: load / h.cap})
			load -= v.load
		}
		h.rnd.plan = load
	}
	if len(items) == 0 {
		return 0
	}
	slices.SortStableFunc(items, func(x, y item) int { return compareLoad(x.v, y.v) })
	bins := make([]*bHost, 0, len(g.hosts))
	for _, h := range g.hosts {
		if h.room() > balanceEps {
			bins = append(bins, h)
		}
	}
	slices.SortFunc(bins, compareRoom)
	for _, it := range items {
		bins = b.pack(bins, it, minGain)
	}
	before := len(p.Moves)
	for _, src := range sources { // most utilised first
		b.emitSource(p, src, limit, minGain)
	}
	return len(p.Moves) - before
}

// pack places it on the host with the least room that still takes it
// (best fit) and keeps bins, the hosts with room, in order. A VM that fits
// no room goes to a host that can shed a VM to make room (chainTarget), or
// else stays on its source.
func (b *balancer) pack(bins []*bHost, it item, minGain float64) []*bHost {
	w := it.v.load
	cheap := func(x *bHost) bool {
		mg := minGain + shouldCost(it.v, it.src, x)
		return x != it.src && x.rnd.plan+w <= (it.xa-mg)*x.cap+balanceEps && !(x.rnd.source && b.reaches(x, it.src))
	}
	takes := func(x *bHost) bool { return cheap(x) && b.fitsOn(it.v, x) }
	i, _ := slices.BinarySearchFunc(bins, w-balanceEps, func(h *bHost, w float64) int { return cmp.Compare(h.room(), w) })
	// A host below the mean by more than the threshold (empty, back from
	// maintenance) is filled first: the emptiest that takes the VM
	// (placement asked of the emptiest first, until one does).
	low := -1
	for tries, refused := 0, []*bHost(nil); b.lowHosts > 0 && low < 0 && tries < b.lowHosts; tries++ {
		for j := i; j < len(bins); j++ {
			if x := bins[j]; x.rnd.floor > x.rnd.plan-x.load+balanceEps && !slices.Contains(refused, x) &&
				(low < 0 || x.rnd.plan/x.cap < bins[low].rnd.plan/bins[low].cap) && cheap(x) {
				low = j
			}
		}
		if low < 0 {
			break
		}
		if !b.fitsOn(it.v, bins[low]) {
			refused, low = append(refused, bins[low]), -1
		}
	}
	for ; i < len(bins); i++ {
		if low >= 0 {
			i = low
		} else if !takes(bins[i]) {
			continue
		}
		x := bins[i]
		mg := minGain + shouldCost(it.v, it.src, x)
		bins = slices.Delete(bins, i, i+1)
		b.ledger.Reserve(it.v.vm.ID, it.src.name, x.name, placement.MemoryNeed(it.v.vm))
		x.rnd.plan += w
		x.rnd.limit = math.Min(x.rnd.limit, (it.xa-mg)*x.cap)
		it.src.rnd.packed = append(it.src.rnd.packed, packedMove{v: it.v, dst: x})
		if x.rnd.source {
			it.src.rnd.out = append(it.src.rnd.out, x)
		}
		return insertByRoom(bins, x)
	}
	if x := b.chainTarget(bins, it, minGain); x != nil {
		if j := slices.Index(bins, x); j >= 0 {
			bins = slices.Delete(bins, j, j+1)
		}
		b.ledger.Reserve(it.v.vm.ID, it.src.name, x.name, placement.MemoryNeed(it.v.vm))
		x.rnd.plan += w
		x.rnd.limit = math.Min(x.rnd.limit, (it.xa-minGain-shouldCost(it.v, it.src, x))*x.cap)
		x.rnd.chained = true
		it.src.rnd.packed = append(it.src.rnd.packed, packedMove{v: it.v, dst: x})
		return bins
	}
	it.src.rnd.plan += w // it stays
	if j := slices.Index(bins, it.src); j >= 0 {
		bins = slices.Delete(bins, j, j+1)
		return insertByRoom(bins, it.src)
	}
	return bins
}

// chainTarget returns the host, not a source of the round, that takes it
// above the line but can get back under it by shedding one VM of its own
// that a host with room takes (the next round moves it), with the least
// room to spare; or nil.
func (b *balancer) chainTarget(bins []*bHost, it item, minGain float64) *bHost {
	w := it.v.load
	var best *bHost
	bestSlack := math.Inf(1)
	for _, x := range it.src.group.hosts {
		if x == it.src || x.rnd.source || x.rnd.chained || x.rnd.plan+w > (it.xa-minGain-shouldCost(it.v, it.src, x))*x.cap+balanceEps {
			continue
		}
		// The largest room elsewhere bounds the VM x can shed.
		free := 0.0
		for i := len(bins) - 1; i >= 0 && i >= len(bins)-2; i-- {
			if bins[i] != x {
				free = bins[i].room()
				break
			}
		}
		need := w - x.room()
		shed := math.Inf(1)
		for _, u := range x.vms { // largest first
			if u.load < need-balanceEps {
				break
			}
			if u.load <= free+balanceEps && u.load >= minGain*x.cap {
				shed = u.load
			}
		}
		slack := x.room() + shed - w
		if math.IsInf(shed, 1) || slack >= bestSlack {
			continue
		}
		if b.fitsOn(it.v, x) {
			best, bestSlack = x, slack
		}
	}
	return best
}

// insertByRoom puts h back into bins when it still has room.
func insertByRoom(bins []*bHost, h *bHost) []*bHost {
	if h.room() <= balanceEps {
		return bins
	}
	i, _ := slices.BinarySearchFunc(bins, h, compareRoom)
	return slices.Insert(bins, i, h)
}

// reaches reports whether from sends VMs, directly or through other
// sources, to to: packing a VM of to onto from would then need each to
// drain before the other.
func (b *balancer) reaches(from, to *bHost) bool {
	b.stamp++
	var walk func(h *bHost) bool
	walk = func(h *bHost) bool {
		if h == to {
			return true
		}
		if h.rnd.seen == b.stamp {
			return false
		}
		h.rnd.seen = b.stamp
		for _, x := range h.rnd.out {
			if walk(x) {
				return true
			}
		}
		return false
	}
	return walk(from)
}

// emitSource emits the packed moves of src after those of the sources it
// sends to. A move that would exceed limit or no longer gain min_gain is
// dropped and its reservation released.
func (b *balancer) emitSource(p *Plan, src *bHost, limit int, minGain float64) {
	if src.rnd.done {
		return
	}
	src.rnd.done = true
	for _, x := range src.rnd.out {
		b.emitSource(p, x, limit, minGain)
	}
	for _, m := range src.rnd.packed {
		b.ledger.Release(m.v.vm.ID)
		xa := src.util()
		gain := xa - math.Max(xa-m.v.load/src.cap, m.dst.util()+m.v.load/m.dst.cap)
		if len(p.Moves) >= limit || gain < minGain+shouldCost(m.v, src, m.dst) {
			continue
		}
		i := slices.IndexFunc(src.vms, func(v bVM) bool { return v.vm == m.v.vm })
		b.emit(p, src, i, m.dst, gain)
	}
}
