package policy

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/herd-project/herd/cluster"
)

const gib = int64(1) << 30

// newCluster returns a state with n healthy, available hosts of memGiB each,
// named h01, h02, … (wider numbers for big n), all in driver vc, group g1.
func newCluster(n int, memGiB int64) *cluster.State {
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
			MemoryBytes: memGiB * gib, CPUs: 64,
		}
	}
	return s
}

// setHost replaces a host with a changed copy, as the FSM would.
func setHost(s *cluster.State, name string, change func(h *cluster.Host)) {
	h := *s.Hosts[name]
	change(&h)
	s.Hosts[name] = &h
}

// addVM adds a VM named after its id.
func addVM(s *cluster.State, id, host string, memGiB int64, power cluster.PowerState) *cluster.VM {
	return addVMBytes(s, id, host, memGiB*gib, power)
}

func addVMBytes(s *cluster.State, id, host string, mem int64, power cluster.PowerState) *cluster.VM {
	vm := &cluster.VM{ID: id, Name: id, Host: host, Driver: "vc", MemoryBytes: mem, VCPUs: 2, Power: power}
	s.VMs[id] = vm
	return vm
}

// setVM replaces a VM with a changed copy.
func setVM(s *cluster.State, id string, change func(vm *cluster.VM)) *cluster.VM {
	vm := *s.VMs[id]
	change(&vm)
	s.VMs[id] = &vm
	return &vm
}

// inventory is a synthetic cluster: hosts of hostGiB, each but the first
// with perHost running VMs of 1–32 GiB, and the first with onSource.
func inventory(hosts, perHost, onSource int, hostGiB int64, seed uint64) *cluster.State {
	s := newCluster(hosts, hostGiB)
	r := rand.New(rand.NewPCG(seed, 1))
	names := s.HostNames()
	n := 0
	add := func(host string) {
		n++
		power := cluster.PoweredOn
		if r.IntN(10) == 0 {
			power = cluster.PoweredOff
		}
		vm := addVM(s, fmt.Sprintf("vm%06d", n), host, 1+r.Int64N(32), power)
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

// ids lists the VM ids of items.
func ids(items []Item) string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.VM
	}
	return strings.Join(out, ",")
}

// targets counts items by target.
func targets(items []Item) map[string]int {
	m := map[string]int{}
	for _, it := range items {
		m[it.Target]++
	}
	return m
}
