// Package policytest builds the synthetic cluster states the planners'
// tests take: hosts, VMs and inventories of plain data. Only tests import it.
package policytest

import (
	"fmt"
	"math/rand/v2"
	"sort"

	"github.com/herd-project/herd/cluster"
)

// GiB is a gibibyte.
const GiB = int64(1) << 30

// NewCluster returns a state with n healthy, available hosts of memGiB each,
// named h01, h02, … (wider numbers for big n), all in driver vc, group g1.
func NewCluster(n int, memGiB int64) *cluster.State {
	s := cluster.NewState()
	width := len(fmt.Sprint(n))
	if width < 2 {
		width = 2
	}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("h%0*d", width, i)
		s.Hosts[name] = &cluster.Host{
			Name: name, Driver: "vc", Group: "g1",
			Admin: cluster.Available, Maintenance: cluster.MaintenanceOff,
			Health: cluster.HealthAlive, Connection: cluster.Connected,
			MemoryBytes: memGiB * GiB, CPUs: 64,
		}
	}
	return s
}

// SetHost replaces a host with a changed copy, as the FSM would.
func SetHost(s *cluster.State, name string, change func(h *cluster.Host)) {
	h := *s.Hosts[name]
	change(&h)
	s.Hosts[name] = &h
}

// AddVM adds a VM named after its id.
func AddVM(s *cluster.State, id, host string, memGiB int64, power cluster.PowerState) *cluster.VM {
	return AddVMBytes(s, id, host, memGiB*GiB, power)
}

// AddVMBytes adds a VM of mem bytes named after its id.
func AddVMBytes(s *cluster.State, id, host string, mem int64, power cluster.PowerState) *cluster.VM {
	vm := &cluster.VM{ID: id, Name: id, Host: host, Driver: "vc", MemoryBytes: mem, VCPUs: 2, Power: power}
	s.VMs[id] = vm
	return vm
}

// SetVM replaces a VM with a changed copy.
func SetVM(s *cluster.State, id string, change func(vm *cluster.VM)) *cluster.VM {
	vm := *s.VMs[id]
	change(&vm)
	s.VMs[id] = &vm
	return &vm
}

// Inventory is a synthetic cluster: hosts of hostGiB, each but the first
// with perHost running VMs of 1–32 GiB, and the first with onSource.
func Inventory(hosts, perHost, onSource int, hostGiB int64, seed uint64) *cluster.State {
	s := NewCluster(hosts, hostGiB)
	r := rand.New(rand.NewPCG(seed, 1))
	names := s.HostNames()
	n := 0
	add := func(host string) {
		n++
		power := cluster.PoweredOn
		if r.IntN(10) == 0 {
			power = cluster.PoweredOff
		}
		vm := AddVM(s, fmt.Sprintf("vm%06d", n), host, 1+r.Int64N(32), power)
		vm.Priority = r.IntN(3)
	}
	for i := 0; i < onSource; i++ {
		add(names[0])
	}
	for _, h := range names[1:] {
		for i := 0; i < perHost; i++ {
			add(h)
		}
	}
	return s
}

// UnevenCluster returns hosts of hostGiB with vms running VMs of the sizes
// size draws, in GiB: each VM lands on a host drawn with a weight between
// 0.25 and 1.75, so that loads range from light to heavy; a VM that would
// overfill its host goes to the next host that takes it.
func UnevenCluster(hosts, vms int, hostGiB int64, size func(r *rand.Rand) int64, seed uint64) *cluster.State {
	r := rand.New(rand.NewPCG(seed, 3))
	s := NewCluster(hosts, hostGiB)
	names := s.HostNames()
	cum := make([]float64, hosts)
	total := 0.0
	for i := range cum {
		total += 0.25 + 1.5*r.Float64()
		cum[i] = total
	}
	used := make([]int64, hosts)
	for n := 1; n <= vms; n++ {
		gb := size(r)
		i := sort.SearchFloat64s(cum, r.Float64()*total)
		for k := 0; k < hosts && used[i]+gb > hostGiB; k++ {
			i = (i + 1) % hosts
		}
		used[i] += gb
		vm := AddVM(s, fmt.Sprintf("vm%06d", n), names[i], gb, cluster.PoweredOn)
		vm.VCPUs = 1 + r.IntN(8)
	}
	return s
}

// Build returns one host of hostGiB per entry of hosts (h01, h02, …), each
// holding running VMs of the sizes listed, in GiB, named vm001, vm002, … in
// order.
func Build(hostGiB int64, hosts ...[]int64) *cluster.State {
	s := NewCluster(len(hosts), hostGiB)
	n := 0
	for i, vms := range hosts {
		for _, m := range vms {
			n++
			AddVM(s, fmt.Sprintf("vm%03d", n), s.HostNames()[i], m, cluster.PoweredOn)
		}
	}
	return s
}

// UniformSizes draws 1 to 32 GiB, for UnevenCluster.
func UniformSizes(r *rand.Rand) int64 { return 1 + r.Int64N(32) }

// MixedSizes draws one of 2, 4, 8, 16, 32 and 64 GiB, for UnevenCluster.
func MixedSizes(r *rand.Rand) int64 { return 2 << r.IntN(6) }
