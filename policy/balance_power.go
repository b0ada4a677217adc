package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// packed is one tentative move of a host being emptied.
type packed struct {
	v   bVM
	dst *bHost
}

// planPower fills p with the moves that empty the lightest hosts. See
// PlanBalance.
func (b *balancer) planPower(p *BalancePlan, failoverMin int) {
	limit := b.moveLimit()
	var fo *foModel
	if failoverMin > 0 {
		fo = newFoModel(b.s, b.o)
		if c := fo.capacity(); c < failoverMin {
			p.Reason = fmt.Sprintf("failover capacity %d is already below the minimum %d: no host may be emptied", c, failoverMin)
			return
		}
	}
	cands := make([]*bHost, 0, len(b.hosts))
	active := map[*bGroup]int{}
	for _, g := range b.groups {
		cands = append(cands, g.hosts...)
		active[g] = len(g.hosts)
	}
	slices.SortFunc(cands, func(x, y *bHost) int {
		if c := cmp.Compare(x.load, y.load); c != 0 {
			return c
		}
		if c := cmp.Compare(len(x.vms), len(y.vms)); c != 0 {
			return c
		}
		return strings.Compare(x.name, y.name)
	})
	var budget, stop string
	for _, a := range cands {
		if active[a.group] <= 1 || a.role != 0 || a.busy || a.pinned > 0 {
			continue
		}
		if len(p.Moves)+len(a.vms) > limit {
			budget = fmt.Sprintf("max_moves %d leaves too few moves to empty more hosts", limit)
			continue
		}
		moves, ok := b.emptyHost(a)
		if !ok {
			continue
		}
		if fo != nil {
			undo := fo.evacuate(a.name, moves)
			if c := fo.capacity(); c < failoverMin {
				undo()
				b.unpack(a, moves)
				stop = fmt.Sprintf("emptying host %s would drop the failover capacity to %d, below the minimum %d",
					a.name, c, failoverMin)
				break
			}
		}
		a.role |= roleEmptied | roleSource
		active[a.group]--
		for _, m := range moves {
			m.dst.role |= roleTarget
			p.Moves = append(p.Moves, BalanceMove{
				VM: m.v.vm.ID, Name: m.v.vm.Name, From: a.name, To: m.dst.name,
				MemoryBytes: m.v.vm.MemoryBytes, Gain: m.v.load / a.cap,
			})
		}
		p.EmptyHosts = append(p.EmptyHosts, a.name)
	}
	switch {
	case stop != "":
		p.Reason = stop
	case len(p.EmptyHosts) == 0 && budget != "":
		p.Reason = budget
	case len(p.EmptyHosts) == 0:
		p.Reason = "no host can be emptied: each is the last of its group, has VMs that may not move or moves in flight, " +
			"or has VMs that fit nowhere else"
	}
}

// emptyHost tentatively places every movable VM of a, largest memory first,
// on the most utilised other host of its group that takes it, reserving as
// it goes. When one does not fit it undoes the others and reports false.
func (b *balancer) emptyHost(a *bHost) ([]packed, bool) {
	order := slices.Clone(a.vms)
	slices.SortFunc(order, func(x, y bVM) int { return compareOrder(x.vm, y.vm) })
	moves := make([]packed, 0, len(order))
	for _, v := range order {
		dst := b.packTarget(a, v)
		if dst == nil {
			b.unpack(a, moves)
			return nil, false
		}
		b.reserve(v, a, dst)
		moves = append(moves, packed{v: v, dst: dst})
	}
	return moves, true
}

// unpack undoes the tentative moves off a, last first.
func (b *balancer) unpack(a *bHost, moves []packed) {
	for i := len(moves) - 1; i >= 0; i-- {
		b.unreserve(moves[i].v, a, moves[i].dst)
	}
}

// packTarget returns the most utilised host of a's group, other than a and
// the hosts being emptied, that takes v under the placement filters and,
// for the cpu metric, stays at or below full CPU; nil when none does.
func (b *balancer) packTarget(a *bHost, v bVM) *bHost {
	hosts := a.group.hosts
	for i := len(hosts) - 1; i >= 0; i-- {
		h := hosts[i]
		if h == a || h.role&(roleEmptied|roleSource) != 0 {
			continue
		}
		if b.metric == BalanceByCPU && h.util()+v.load/h.cap > 1+balanceEps {
			continue
		}
		if b.fitsOn(v, h) {
			return h
		}
	}
	return nil
}
