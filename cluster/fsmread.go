package cluster

import (
	"fmt"
	"reflect"
)

// Usage sums the state's VMs: what each host's take (State.Usage), how
// many are in each power state, and the memory of each host's running VMs.
type Usage struct {
	Hosts   map[string]HostUsage
	ByPower map[PowerState]int
	// RunningMemory counts, per host, its running VMs by memory size in
	// bytes (size → VMs): what the failover capacity packs.
	RunningMemory map[string]map[int64]int
	// RunningChanges counts the changes to RunningMemory: while it and the
	// Usage are the same, so are the running VMs' sizes per host.
	RunningChanges uint64
}

// ReadWithUsage calls fn like Read, with the state's Usage. The FSM keeps
// it up to date as entries change VMs, so readers that answer often (GET
// /v1/hosts, /metrics) never go over every VM: fn must not change it nor
// keep it past its return.
func (f *FSM) ReadWithUsage(fn func(s *State, u *Usage)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.state, f.state.usageOf)
}

// track makes s keep its Usage as its VMs change (the FSM's live state;
// copies and snapshots do not).
func (s *State) track() {
	s.usageOf = s.CountUsage()
}

// CountUsage counts s's Usage afresh, going over every VM.
func (s *State) CountUsage() *Usage {
	u := &Usage{Hosts: map[string]HostUsage{}, ByPower: map[PowerState]int{}, RunningMemory: map[string]map[int64]int{}}
	for _, vm := range s.VMs {
		u.count(vm, 1)
	}
	return u
}

// setVM stores vm under id, and counts the change when s is tracked.
func (s *State) setVM(id string, vm *VM) {
	if u := s.usageOf; u != nil {
		if old := s.VMs[id]; old != nil {
			u.count(old, -1)
		}
		u.count(vm, 1)
	}
	s.VMs[id] = vm
}

// deleteVM removes the VM id, and counts it when s is tracked.
func (s *State) deleteVM(id string) {
	if u := s.usageOf; u != nil {
		if old := s.VMs[id]; old != nil {
			u.count(old, -1)
		}
	}
	delete(s.VMs, id)
}

// count adds vm to u (sign 1) or takes it out (-1). A host or power state
// left with nothing is dropped, as State.Usage has none for it.
func (u *Usage) count(vm *VM, sign int) {
	h := u.Hosts[vm.Host]
	h.VMs += sign
	if vm.Power == PoweredOn {
		h.RunningVMs += sign
		h.MemoryUsedBytes += int64(sign) * vm.MemoryBytes
		h.VCPUsUsed += sign * vm.VCPUs
		u.RunningChanges++
		sizes := u.RunningMemory[vm.Host]
		if sizes == nil {
			sizes = map[int64]int{}
			u.RunningMemory[vm.Host] = sizes
		}
		if sizes[vm.MemoryBytes] += sign; sizes[vm.MemoryBytes] == 0 {
			delete(sizes, vm.MemoryBytes)
		}
		if len(sizes) == 0 {
			delete(u.RunningMemory, vm.Host)
		}
	}
	if h.VMs == 0 {
		delete(u.Hosts, vm.Host)
	} else {
		u.Hosts[vm.Host] = h
	}
	if u.ByPower[vm.Power] += sign; u.ByPower[vm.Power] == 0 {
		delete(u.ByPower, vm.Power)
	}
}

// checkUsage is set by this package's tests: every command applied counts
// the usage afresh first (recountUsage, as tests change states directly) and
// compares what it kept as VMs changed with one counted afresh after
// (verifyUsage).
var checkUsage bool

func (s *State) recountUsage() {
	if checkUsage {
		s.track()
	}
}

// verifyUsage panics when checkUsage is set and s's kept Usage differs from
// one counted afresh: a change of s.VMs that bypassed setVM or deleteVM.
func (s *State) verifyUsage() {
	if !checkUsage || s.usageOf == nil {
		return
	}
	kept := *s.usageOf
	s.track()
	fresh := *s.usageOf
	kept.RunningChanges, fresh.RunningChanges = 0, 0
	if !reflect.DeepEqual(kept, fresh) {
		panic(fmt.Sprintf("usage kept as VMs changed differs from the state's at index %d:\nkept  %+v\nstate %+v", s.Index, kept, fresh))
	}
}
