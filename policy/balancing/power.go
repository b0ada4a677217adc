package balancing

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/failover"
	"github.com/herd-project/herd/policy/placement"
)

// packed is one tentative move of a host being emptied.
type packed struct {
	v   bVM
	dst *bHost
}

// failoverMoves gives moves to the failover model.
func failoverMoves(moves []packed) []failover.Move {
	out := make([]failover.Move, len(moves))
	for i, mv := range moves {
		out[i] = failover.Move{To: mv.dst.name, MemoryBytes: mv.v.vm.MemoryBytes}
	}
	return out
}

// planPower fills p with the moves that empty the lightest hosts. See
// Compute.
func (b *balancer) planPower(p *Plan, failoverMin int) {
	limit := b.moveLimit()
	var fo *failover.Model
	if failoverMin > 0 {
		fo = failover.NewModel(b.s, b.o)
		if c := fo.Capacity(); c < failoverMin {
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
		if active[a.group] <= 1 || a.role != 0 || a.busy || a.pinned > 0 || a.stoppedPinned > 0 {
			continue
		}
		if len(p.Moves)+len(a.vms)+len(a.stopped) > limit {
			budget = fmt.Sprintf("max_moves %d leaves too few moves to empty more hosts", limit)
			continue
		}
		moves, ok := b.emptyHost(a)
		if !ok {
			continue
		}
		if fo != nil {
			undo := fo.Evacuate(a.name, failoverMoves(moves))
			if c := fo.Capacity(); c < failoverMin {
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
			p.Moves = append(p.Moves, Move{
				VM: m.v.vm.ID, Name: m.v.vm.Name, From: a.name, To: m.dst.name,
				MemoryBytes: m.v.vm.MemoryBytes, Gain: m.v.load / a.cap, Offline: m.v.vm.Power != cluster.PoweredOn,
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

// emptyHost tentatively places every movable VM of a, running VMs largest
// memory first and then the stopped ones, on the most utilised other host
// of its group that takes it within the target utilisation, reserving as
// it goes. When one does not fit it undoes the others and reports false.
func (b *balancer) emptyHost(a *bHost) ([]packed, bool) {
	order := slices.Clone(a.vms)
	slices.SortFunc(order, func(x, y bVM) int { return placement.CompareOrder(x.vm, y.vm) })
	order = append(order, a.stopped...)
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

// headroom reports whether h stays within the target utilisation with v:
// its load (memory, or busy CPUs) at most target × capacity, and the vCPUs
// of its running VMs at most target × CPUs × cpu_overcommit (1 when not
// above 1). Stopped VMs need none. No target (0) leaves only the filters.
func (b *balancer) headroom(h *bHost, v bVM) bool {
	t := b.pol.TargetUtilisation
	if t <= 0 || v.vm.Power != cluster.PoweredOn {
		return true
	}
	if h.load+v.load > t*h.cap+balanceEps*h.cap {
		return false
	}
	ratio := max(1, b.o.Resolved().CPUOvercommit)
	return h.h.CPUs <= 0 || float64(h.vcpus+v.vm.VCPUs) <= t*float64(h.h.CPUs)*ratio+balanceEps
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
		if b.metric == policy.BalanceByCPU && h.util()+v.load/h.cap > 1+balanceEps || !b.headroom(h, v) {
			continue
		}
		if b.fitsOn(v, h) {
			return h
		}
	}
	return nil
}
