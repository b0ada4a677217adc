package balancing

import (
	"fmt"
	"math/rand/v2"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/policytest"
)

// planBalanceGreedy is the simple plan alone (see planGreedy): the
// heaviest VM of the most utilised host onto the least utilised host that
// takes it, until the threshold.
func planBalanceGreedy(in Input) Plan {
	plan := Plan{Strategy: policy.BalanceEven, Moves: []Move{}}
	b := newBalancer(in, in.Policy.Metric)
	plan.Metric, plan.Before = b.metric, b.imbalance()
	b.planGreedy(&plan)
	plan.After = b.imbalance()
	return plan
}

// randomCluster returns hosts of hostGiB, each with a random number of
// running VMs (0 to maxVMs) of 1 to maxGiB, skewed so that the first hosts
// are the fullest; VMs do not overfill a host.
func randomCluster(r *rand.Rand, hosts, maxVMs int, hostGiB, maxGiB int64) *cluster.State {
	s := policytest.NewCluster(hosts, hostGiB)
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
			vm := policytest.AddVM(s, fmt.Sprintf("vm%03d", n), name, size, cluster.PoweredOn)
			vm.VCPUs = 1 + r.IntN(8)
		}
	}
	return s
}
