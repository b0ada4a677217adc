package balancing

import "sort"

// evictNodes bounds the subsets evictionSet visits per host.
const evictNodes = 5000

// evictionSet returns the VMs of vms (largest load first) to move so that
// at least excess load leaves, at the lowest cost and among equal costs the
// least load. A VM costs one move when some host takes it under the line
// (load at most maxRoom), and two when a host must first shed a VM of its
// own to make room (at most maxChain). VMs lighter than minLoad, which
// cannot gain min_gain, or heavier than maxChain are left out; nil when the
// others cannot cover the excess.
//
// The search is a branch and bound over the VMs in load order, exact up to
// evictNodes subsets, then the best found, starting from the better of the
// largest VMs and the largest completed by the smallest VM that covers the
// rest.
func evictionSet(vms []bVM, excess, minLoad, maxRoom, maxChain float64) []bVM {
	var c []bVM
	var cost []int
	for _, v := range vms {
		if v.load >= minLoad && v.load <= maxChain+balanceEps {
			c = append(c, v)
			cost = append(cost, 1+btoi(v.load > maxRoom+balanceEps))
		}
	}
	n := len(c)
	excess -= balanceEps
	// prefix[i] is the load of c[:i].
	prefix := make([]float64, n+1)
	for i, v := range c {
		prefix[i+1] = prefix[i] + v.load
	}
	if excess <= 0 || prefix[n] < excess {
		return nil
	}
	// minCount is how many VMs of c[j:] at least it takes to cover rest.
	minCount := func(j int, rest float64) int {
		r := sort.Search(n-j+1, func(r int) bool { return prefix[j+r]-prefix[j] >= rest })
		if r > n-j {
			return -1
		}
		return r
	}
	var best []int
	bestCost, bestSum := 0, 0.0
	consider := func(set []int) {
		k, sum := 0, 0.0
		for _, i := range set {
			k += cost[i]
			sum += c[i].load
		}
		if best == nil || k < bestCost || (k == bestCost && sum < bestSum-balanceEps) {
			best, bestCost, bestSum = append(best[:0:0], set...), k, sum
		}
	}
	k := minCount(0, excess)
	largest := make([]int, k)
	for i := range largest {
		largest[i] = i
	}
	consider(largest)
	rest := excess - prefix[k-1]
	last := k - 1
	for j := k; j < n && c[j].load >= rest; j++ {
		last = j
	}
	consider(append(largest[:k-1:k-1], last))

	chosen := make([]int, 0, k+1)
	nodes := 0
	var search func(j, spent int, sum float64)
	search = func(j, spent int, sum float64) {
		if sum >= excess {
			consider(chosen)
			return
		}
		r := minCount(j, excess-sum)
		if r < 0 || spent+r > bestCost {
			return
		}
		if spent+r == bestCost && sum+prefix[n]-prefix[n-r] >= bestSum-balanceEps {
			return // even the lightest r left do no better
		}
		for i := j; i < n && nodes < evictNodes; i++ {
			if prefix[n]-prefix[i] < excess-sum {
				return // what is left falls short
			}
			nodes++
			chosen = append(chosen, i)
			search(i+1, spent+cost[i], sum+c[i].load)
			chosen = chosen[:len(chosen)-1]
		}
	}
	search(0, 0, 0)
	out := make([]bVM, len(best))
	for i, j := range best {
		out[i] = c[j]
	}
	return out
}

// btoi is 1 for true and 0 for false.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
