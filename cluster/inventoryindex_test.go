package cluster

import (
	"testing"
	"time"
)

// An inventory read against an older state than a finished step leaves the
// step's VM as the step recorded, through the raft encoding; a read after
// the step is believed.
func TestInventoryOlderThanAStepKeepsTheStep(t *testing.T) {
	s := NewState()
	idx := uint64(0)
	apply := func(c Command) {
		t.Helper()
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		idx++
		if err := s.Apply(d, idx); err != nil {
			t.Fatal(err)
		}
		s.Index = idx
	}
	now := time.Now().UTC()
	host := func(n string) Host { return Host{Name: n, MemoryBytes: 64 << 30, CPUs: 8, Connection: Connected} }
	vmOn := func(h string) VM { return VM{ID: "v1", Name: "vm-1", Host: h, MemoryBytes: 1 << 30, Power: PoweredOn} }
	apply(&InventoryDiff{Driver: "dc", UpsertHosts: []Host{host("H2"), host("H5")}, UpsertVMs: []VM{vmOn("H2")}})
	read := s.Index // a slow inventory reads now: v1 on H2
	apply(&StartOperation{Op: Operation{ID: "op1", Kind: OpMigrate, Host: "H2", Created: now,
		Items: []OpItem{{VM: "v1", Name: "vm-1", Action: ActionLiveMigrate, From: "H2"}}}})
	apply(&StartItem{Op: "op1", VM: "v1", Target: "H5", Time: now})
	apply(&FinishItem{Op: "op1", VM: "v1", OK: true, Time: now})
	if s.VMs["v1"].Host != "H5" {
		t.Fatalf("step left v1 on %s", s.VMs["v1"].Host)
	}
	late := &InventoryDiff{Driver: "dc", ReadIndex: read, UpsertVMs: []VM{vmOn("H2")},
		Events: []Event{{Time: now, Type: "inventory.vm_moved", Host: "H5", Target: "H2", VM: "v1", Message: "VM vm-1 is now on H2 (was H5)"}}}
	events := len(s.Events)
	apply(late)
	if s.VMs["v1"].Host != "H5" || len(s.Events) != events {
		t.Fatalf("late inventory: v1 on %s, %d new events", s.VMs["v1"].Host, len(s.Events)-events)
	}
	late.ReadIndex = s.Index // read after the step: a real move behind Herd's back
	apply(late)
	if s.VMs["v1"].Host != "H2" || len(s.Events) != events+1 {
		t.Fatalf("fresh inventory: v1 on %s, %d new events", s.VMs["v1"].Host, len(s.Events)-events)
	}
}

// A host in maintenance is called empty and ready only with no VM running
// and no stale copy (power unknown) left on it.
func TestMaintenanceNote(t *testing.T) {
	for _, tc := range []struct {
		m              MaintenanceState
		running, stale int
		want           string
	}{
		{MaintenanceOn, 0, 0, "host H is in maintenance: empty and ready"},
		{MaintenanceOn, 7, 0, "host H is in maintenance, 7 VMs still running"},
		{MaintenanceOn, 0, 2, "host H is in maintenance, 2 stale copies not yet destroyed"},
		{MaintenanceOn, 1, 2, "host H is in maintenance, 1 VMs still running and 2 stale copies not yet destroyed"},
		{MaintenanceEntering, 3, 0, ""},
		{MaintenanceOff, 0, 0, ""},
	} {
		if got := MaintenanceNote("H", tc.m, tc.running, tc.stale); got != tc.want {
			t.Errorf("MaintenanceNote(%s, %d running, %d stale) = %q, want %q", tc.m, tc.running, tc.stale, got, tc.want)
		}
	}
}
