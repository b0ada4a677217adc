// Package failover computes the failover capacity: how many of the largest
// hosts the cluster can lose at once and still place every running VM of
// the lost hosts on the survivors.
package failover

import (
	"cmp"
	"slices"
	"strings"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy/placement"
)

// Capacity returns how many of the largest hosts the cluster can
// lose at once and still place every running VM of the lost hosts on the
// survivors: 0 when even the loss of the largest host cannot be absorbed.
//
// The hosts that can fail are those AVAILABLE or NOT_ACCEPTING, with
// maintenance off, health alive or unknown, and connected; they are taken
// largest memory first, and among equal ones the most used first (the worse
// loss), then by name. Survivors absorb VMs only within their driver and
// group, only when AVAILABLE (recovery never places on a NOT_ACCEPTING
// host), and only in their memory after the memory reserve (o's, else its
// policy's) less what their running VMs use. Whether k losses are absorbed is decided by first-fit
// decreasing: the lost VMs, largest first, each onto the first survivor,
// most free memory first, where it fits. The largest such k is found by
// binary search, bounded first by comparing total memory, in
// O(n log n) per step for n hosts and VMs.
func Capacity(s *cluster.State, o placement.Options) int {
	return NewModel(s, o).Capacity()
}

// CapacityOfUsage is Capacity taking the running VMs from
// u, the usage of s, instead of going over every VM of s.
func CapacityOfUsage(s *cluster.State, u *cluster.Usage, o placement.Options) int {
	return newModelOf(s, u, o).Capacity()
}

// AfterMaintenance returns the failover capacity the cluster would
// have with host in maintenance: its running VMs placed on the other hosts
// of its group first (largest first, each where it leaves the largest share
// of memory free, as Place spreads them), and the host then neither failing
// nor absorbing. It returns 0 when those VMs do not all fit, and the
// current capacity when host is not one that can fail (unknown, already
// closed, unhealthy).
func AfterMaintenance(s *cluster.State, host string, o placement.Options) int {
	m := NewModel(s, o)
	i, ok := m.index[host]
	if !ok {
		return m.Capacity()
	}
	if !m.drain(i) {
		return 0
	}
	return m.Capacity()
}

// foHost is one host that can fail, as the failover model sees it.
type foHost struct {
	name   string
	group  int
	mem    int64   // physical memory, to rank the largest
	free   int64   // usable memory less running VMs; may be negative
	used   int64   // memory of running VMs
	vms    []int64 // memory of each running VM
	absorb bool    // AVAILABLE: takes VMs of lost hosts
	closed bool    // in maintenance or emptied: neither fails nor absorbs
}

// Model is the failover view of a cluster, with scratch space reused by
// every feasibility check.
type Model struct {
	hosts   []foHost
	index   map[string]int
	groups  int
	lost    []uint32 // stamp of the check in which a host is lost
	stamp   uint32
	items   [][]int64 // per group, VMs to place in the current check
	touched []int
	byFree  [][]int // per group, the absorbers of the current capacity run
	bins    []int64
	tree    maxTree
}

// Host is what the failover capacity takes of one host: states
// whose hosts give the same Host each, whose running VMs have the
// same sizes on the same hosts, and whose memory reserve is the same, have
// the same failover capacity.
type Host struct {
	Driver, Group string
	Admin         cluster.AdminStatus
	Maintenance   cluster.MaintenanceState
	Health        cluster.Health
	Connection    cluster.Connection
	MemoryBytes   int64
}

// HostOf returns what the failover capacity takes of h.
func HostOf(h *cluster.Host) Host {
	return Host{Driver: h.Driver, Group: h.Group, Admin: h.Admin, Maintenance: h.Maintenance, Health: h.Health,
		Connection: h.Connection, MemoryBytes: h.MemoryBytes}
}

// NewModel builds the failover model of s.
func NewModel(s *cluster.State, o placement.Options) *Model {
	return newModelOf(s, nil, o)
}

// newModelOf builds the failover model of s, with the running VMs of u
// when it is not nil (u must be s's usage).
func newModelOf(s *cluster.State, u *cluster.Usage, o placement.Options) *Model {
	o = o.Resolved()
	m := &Model{index: make(map[string]int, len(s.Hosts))}
	groups := map[string]int{}
	for _, name := range s.HostNames() {
		h := s.Hosts[name]
		if (h.Admin != cluster.Available && h.Admin != cluster.NotAccepting) || h.Maintenance != cluster.MaintenanceOff ||
			(h.Health != cluster.HealthAlive && h.Health != cluster.HealthUnknown) || h.Connection != cluster.Connected {
			continue
		}
		key := h.Driver + "/" + h.Group
		g, ok := groups[key]
		if !ok {
			g = len(groups)
			groups[key] = g
		}
		m.index[name] = len(m.hosts)
		m.hosts = append(m.hosts, foHost{
			name: name, group: g, mem: h.MemoryBytes, free: placement.Usable(h, o.MemoryReserve),
			absorb: h.Admin == cluster.Available,
		})
	}
	if u != nil {
		for i := range m.hosts {
			h := &m.hosts[i]
			for size, n := range u.RunningMemory[h.name] {
				for range n {
					h.vms = append(h.vms, size)
				}
				h.used += int64(n) * size
				h.free -= int64(n) * size
			}
		}
	} else {
		for _, vm := range s.VMs {
			if vm.Power != cluster.PoweredOn {
				continue
			}
			if i, ok := m.index[vm.Host]; ok {
				h := &m.hosts[i]
				h.vms = append(h.vms, vm.MemoryBytes)
				h.used += vm.MemoryBytes
				h.free -= vm.MemoryBytes
			}
		}
	}
	m.groups = len(groups)
	m.lost = make([]uint32, len(m.hosts))
	m.items = make([][]int64, m.groups)
	return m
}

// place puts a VM of size bytes on host j.
func (m *Model) place(j int, size int64) {
	h := &m.hosts[j]
	h.vms = append(h.vms, size)
	h.used += size
	h.free -= size
}

// drain closes host i after placing its running VMs on the absorbing hosts
// of its group, largest first, each where it leaves the largest share of
// memory free. It reports false when a VM fits nowhere.
func (m *Model) drain(i int) bool {
	src := &m.hosts[i]
	src.closed = true
	vms := slices.Clone(src.vms)
	slices.SortFunc(vms, func(a, b int64) int { return cmp.Compare(b, a) })
	src.vms, src.used, src.free = nil, 0, 0
	for _, size := range vms {
		best, bestFrac := -1, 0.0
		for j := range m.hosts {
			h := &m.hosts[j]
			if j == i || h.closed || !h.absorb || h.group != src.group || h.free < size || h.mem <= 0 {
				continue
			}
			if f := float64(h.free-size) / float64(h.mem); best < 0 || f > bestFrac {
				best, bestFrac = j, f
			}
		}
		if best < 0 {
			return false
		}
		m.place(best, size)
	}
	return true
}

// Move is one VM of a host being emptied: its memory and where it goes.
type Move struct {
	To          string
	MemoryBytes int64
}

// Evacuate applies a power-saving emptying of host name to the model: its
// VMs go where moves say and it closes. The returned function undoes it.
func (m *Model) Evacuate(name string, moves []Move) func() {
	i, ok := m.index[name]
	if !ok {
		return func() {}
	}
	saved := map[int]foHost{i: m.hosts[i]}
	for _, mv := range moves {
		if j, ok := m.index[mv.To]; ok {
			if _, seen := saved[j]; !seen {
				saved[j] = m.hosts[j]
			}
			m.place(j, mv.MemoryBytes)
		}
	}
	h := &m.hosts[i]
	h.closed, h.vms, h.used, h.free = true, nil, 0, 0
	return func() {
		for j, h := range saved {
			m.hosts[j] = h // appends never touched the saved slices' elements
		}
	}
}

// order returns the open hosts, largest memory first, then most used, then
// by name.
func (m *Model) order() []int {
	out := make([]int, 0, len(m.hosts))
	for i := range m.hosts {
		if !m.hosts[i].closed {
			out = append(out, i)
		}
	}
	slices.SortFunc(out, func(a, b int) int {
		x, y := &m.hosts[a], &m.hosts[b]
		if c := cmp.Compare(y.mem, x.mem); c != 0 {
			return c
		}
		if c := cmp.Compare(y.used, x.used); c != 0 {
			return c
		}
		return strings.Compare(x.name, y.name)
	})
	return out
}
