package policy

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/herd-project/herd/cluster"
)

// planBalanceGreedy is the naive baseline the evenly-distributed planner is
// measured against: the biggest movable VM of the most utilised host goes
// to the least utilised host that takes it, again and again, while the
// imbalance is above the threshold, within max_moves, and while each move
// lowers the pair's peak by min_gain. It shares PlanBalance's model, filters
// and rules (a VM moves at most once), so that only the
// choice of moves differs.
func planBalanceGreedy(in BalanceInput) BalancePlan {
	plan := BalancePlan{Strategy: BalanceEven, Moves: []BalanceMove{}}
	b := newBalancer(in, in.Policy.Metric)
	plan.Metric, plan.Before = b.metric, b.imbalance()
	t, limit := b.pol.Threshold, b.moveLimit()
	minGain := math.Max(b.pol.MinGain, balanceEps)
	for len(plan.Moves) < limit {
		g := b.worstGroup(t)
		if g == nil {
			break
		}
		src := g.hosts[len(g.hosts)-1]
		c := b.greedyMove(g, src)
		if c == nil || c.gain < minGain {
			g.stuck = "no greedy move"
			continue
		}
		b.emit(&plan, src, c.idx, c.dst, c.gain)
	}
	plan.After = b.imbalance()
	return plan
}

// greedyMove returns the biggest VM of src that the least utilised
// eligible host takes, or nil.
func (b *balancer) greedyMove(g *bGroup, src *bHost) *evenChoice {
	xa := src.util()
	for _, dst := range g.hosts {
		if dst == src || dst.util() >= xa {
			continue
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

// randomCluster returns hosts of hostGiB, each with a random number of
// running VMs (0 to maxVMs) of 1 to maxGiB, skewed so that the first hosts
// are the fullest; VMs do not overfill a host.
func randomCluster(r *rand.Rand, hosts, maxVMs int, hostGiB, maxGiB int64) *cluster.State {
	s := newCluster(hosts, hostGiB)
	n := 0
	for i, name := range s.HostNames() {
		count := r.IntN(maxVMs+1) * (hosts - i) / hosts
		if i == 0 {
			count = maxVMs
		}
		var used int64
		for j := 0; j < count; j++ {
			size := 1 + r.Int64N(maxGiB)
			if used+size > hostGiB {
				break
			}
			used += size
			n++
			vm := addVM(s, fmt.Sprintf("vm%03d", n), name, size, cluster.PoweredOn)
			vm.VCPUs = 1 + r.IntN(8)
		}
	}
	return s
}
