package cluster

import (
	"bytes"
	"io"
	"testing"

	"github.com/hashicorp/raft"
)

// The usage ReadWithUsage shares is that of the state it reads: after each
// applied entry and after a restored snapshot.
func TestReadWithUsageFollowsTheState(t *testing.T) {
	f := NewFSM(nil)
	apply := func(index uint64, c Command) {
		t.Helper()
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		if err, ok := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: b}).(error); ok && err != nil {
			t.Fatal(err)
		}
	}
	usageOf := func(host string) HostUsage {
		var u HostUsage
		f.ReadWithUsage(func(s *State, su *Usage) {
			if want := s.Usage()[host]; su.Hosts[host] != want {
				t.Errorf("shared usage of %s %+v, the state's %+v", host, su.Hosts[host], want)
			}
			running := 0
			for _, vm := range s.VMs {
				if vm.Power == PoweredOn {
					running++
				}
			}
			if su.ByPower[PoweredOn] != running {
				t.Errorf("%d running VMs shared, %d in the state", su.ByPower[PoweredOn], running)
			}
			u = su.Hosts[host]
		})
		return u
	}
	apply(1, &InventoryDiff{Driver: "dc", UpsertHosts: []Host{{Name: "a"}, {Name: "b"}},
		UpsertVMs: []VM{{ID: "v1", Host: "a", Power: PoweredOn, MemoryBytes: 1 << 30, VCPUs: 2}}})
	if u := usageOf("a"); u.RunningVMs != 1 || u.MemoryUsedBytes != 1<<30 {
		t.Fatalf("a: %+v", u)
	}
	apply(2, &InventoryDiff{Driver: "dc", UpsertVMs: []VM{{ID: "v1", Host: "b", Power: PoweredOn, MemoryBytes: 1 << 30, VCPUs: 2}}})
	if a, b := usageOf("a"), usageOf("b"); a.VMs != 0 || b.RunningVMs != 1 {
		t.Fatalf("after the move: a %+v, b %+v", a, b)
	}
	// A snapshot of an older state, restored: its usage, not the cached one.
	old := NewState()
	old.Apply(&InventoryDiff{Driver: "dc", UpsertHosts: []Host{{Name: "a"}, {Name: "b"}},
		UpsertVMs: []VM{{ID: "v1", Host: "a", Power: PoweredOff}}}, 1)
	old.Index = 2
	var buf bytes.Buffer
	if err := WriteState(&buf, old); err != nil {
		t.Fatal(err)
	}
	if err := f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if a, b := usageOf("a"), usageOf("b"); a.VMs != 1 || a.RunningVMs != 0 || b.VMs != 0 {
		t.Fatalf("after the restore: a %+v, b %+v", a, b)
	}
}
