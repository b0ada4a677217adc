package failover

import (
	"cmp"
	"slices"
)

// Capacity returns the failover capacity of the model: the largest k such
// that the first k hosts of order() can be lost (see the function Capacity).
func (m *Model) Capacity() int {
	order := m.order()
	hi := m.memoryBound(order)
	m.byFree = m.absorbersByFree()
	if hi == 0 || !m.fits(order[:1]) {
		return 0
	}
	lo := 1
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if m.fits(order[:mid]) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// memoryBound returns the largest k for which, in every group, the running
// VMs of the first k hosts of order take no more memory than the surviving
// absorbers have free: a necessary condition for k losses, and one that
// only gets harder as k grows.
func (m *Model) memoryBound(order []int) int {
	free := make([]int64, m.groups)
	need := make([]int64, m.groups)
	for _, i := range order {
		if h := &m.hosts[i]; h.absorb {
			free[h.group] += max(h.free, 0)
		}
	}
	for k, i := range order {
		h := &m.hosts[i]
		if h.absorb {
			free[h.group] -= max(h.free, 0)
		}
		need[h.group] += h.used
		if need[h.group] > free[h.group] {
			return k
		}
	}
	return len(order)
}

// fits reports whether every running VM of the lost hosts can be placed on
// the open absorbing hosts of its group that are not lost, by first-fit
// decreasing with the hosts in order of most free memory. A max segment
// tree over the hosts' free memory finds each first fit in O(log n).
func (m *Model) fits(lost []int) bool {
	m.stamp++
	if m.stamp == 0 { // wrapped: clear old stamps
		clear(m.lost)
		m.stamp = 1
	}
	for _, g := range m.touched {
		m.items[g] = m.items[g][:0]
	}
	m.touched = m.touched[:0]
	for _, i := range lost {
		m.lost[i] = m.stamp
		h := &m.hosts[i]
		if len(h.vms) == 0 {
			continue
		}
		if len(m.items[h.group]) == 0 {
			m.touched = append(m.touched, h.group)
		}
		m.items[h.group] = append(m.items[h.group], h.vms...)
	}
	if len(m.touched) == 0 {
		return true
	}
	for _, g := range m.touched {
		items := m.items[g]
		slices.SortFunc(items, func(a, b int64) int { return cmp.Compare(b, a) })
		m.bins = m.bins[:0]
		for _, j := range m.byFree[g] {
			if m.lost[j] != m.stamp {
				m.bins = append(m.bins, m.hosts[j].free)
			}
		}
		m.tree.reset(m.bins)
		for _, size := range items {
			if size <= 0 {
				break
			}
			j := m.tree.firstFit(size)
			if j < 0 {
				return false
			}
			m.tree.sub(j, size)
		}
	}
	return true
}

// absorbersByFree returns, per group, the open absorbing hosts with free
// memory, most free first, then by name.
func (m *Model) absorbersByFree() [][]int {
	out := make([][]int, m.groups)
	for i := range m.hosts {
		if h := &m.hosts[i]; h.absorb && !h.closed && h.free > 0 {
			out[h.group] = append(out[h.group], i)
		}
	}
	for _, g := range out {
		slices.SortFunc(g, func(a, b int) int {
			if c := cmp.Compare(m.hosts[b].free, m.hosts[a].free); c != 0 {
				return c
			}
			return cmp.Compare(m.hosts[a].name, m.hosts[b].name)
		})
	}
	return out
}

// maxTree is a segment tree holding the maximum of its leaves, to find the
// first leaf at least a given value.
type maxTree struct {
	size int     // leaves, a power of two
	t    []int64 // t[1] is the root; leaves at t[size:]
}

// reset loads vals as the leaves.
func (t *maxTree) reset(vals []int64) {
	t.size = 1
	for t.size < len(vals) {
		t.size *= 2
	}
	if cap(t.t) < 2*t.size {
		t.t = make([]int64, 2*t.size)
	}
	t.t = t.t[:2*t.size]
	copy(t.t[t.size:], vals)
	for i := t.size + len(vals); i < 2*t.size; i++ {
		t.t[i] = -1
	}
	for i := t.size - 1; i >= 1; i-- {
		t.t[i] = max(t.t[2*i], t.t[2*i+1])
	}
}

// firstFit returns the index of the first leaf at least x, or -1.
func (t *maxTree) firstFit(x int64) int {
	if len(t.t) < 2 || t.t[1] < x {
		return -1
	}
	i := 1
	for i < t.size {
		if t.t[2*i] >= x {
			i = 2 * i
		} else {
			i = 2*i + 1
		}
	}
	return i - t.size
}

// sub lowers leaf j by x and updates its ancestors.
func (t *maxTree) sub(j int, x int64) {
	i := j + t.size
	t.t[i] -= x
	for i /= 2; i >= 1; i /= 2 {
		t.t[i] = max(t.t[2*i], t.t[2*i+1])
	}
}
