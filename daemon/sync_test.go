package daemon

import (
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/drivers"
)

func TestInventoryDiff(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	inv := &drivers.Inventory{
		Hosts: []drivers.Host{
			{Name: "h1", Group: "c1", MemoryBytes: 64 << 30, CPUs: 16, Connection: drivers.Connected},
			{Name: "h2", Group: "c1", MemoryBytes: 64 << 30, CPUs: 16, Connection: drivers.Connected},
		},
		VMs: []drivers.VM{
			{ID: "a", Name: "web", Host: "h1", MemoryBytes: 2 << 30, VCPUs: 2, Power: drivers.PoweredOn},
			{ID: "b", Name: "db", Host: "h2", MemoryBytes: 8 << 30, VCPUs: 4, Power: drivers.PoweredOff},
		},
	}
	st := cluster.NewState()
	first := InventoryDiff("dc", st, inv, now)
	if len(first.UpsertHosts) != 2 || len(first.UpsertVMs) != 2 || len(first.RemoveHosts)+len(first.RemoveVMs) != 0 {
		t.Fatalf("first diff: %+v", first)
	}
	if len(first.Events) != 4 {
		t.Fatalf("first diff events: %d", len(first.Events))
	}

	// Apply it, then the same inventory again: nothing to write.
	st = applyDiff(t, st, first)
	if again := InventoryDiff("dc", st, inv, now.Add(time.Minute)); !again.Empty() || len(again.Events) != 0 {
		t.Fatalf("no-change sync wrote %+v", again)
	}

	// A move, a power change, a removed VM, a removed host, a host that stops responding.
	inv.VMs[0].Host = "h2"
	inv.VMs[1].Power = drivers.PoweredOn
	inv.VMs = inv.VMs[:2]
	inv.Hosts[0].Connection = drivers.NotResponding
	inv.Hosts = append(inv.Hosts, drivers.Host{Name: "h3", Group: "c1", MemoryBytes: 32 << 30, Connection: drivers.Connected})
	st = applyDiff(t, st, &cluster.InventoryDiff{Driver: "dc", UpsertVMs: []cluster.VM{{ID: "gone", Name: "old", Host: "h1", Driver: "dc"}}})
	d := InventoryDiff("dc", st, inv, now.Add(2*time.Minute))
	if len(d.UpsertVMs) != 2 || len(d.RemoveVMs) != 1 || d.RemoveVMs[0] != "gone" || len(d.UpsertHosts) != 2 {
		t.Fatalf("change diff: %+v", d)
	}
	types := map[string]int{}
	for _, e := range d.Events {
		types[e.Type]++
		if e.Actor != syncActor {
			t.Errorf("event actor %q", e.Actor)
		}
	}
	for _, typ := range []string{"inventory.vm_moved", "inventory.vm_power", "inventory.vm_removed", "inventory.host_connection", "inventory.host_added"} {
		if types[typ] != 1 {
			t.Errorf("want one %s event, got %v", typ, types)
		}
	}

	// Another driver's hosts and VMs are not touched.
	other := InventoryDiff("other", st, &drivers.Inventory{}, now)
	if !other.Empty() {
		t.Fatalf("diff for another driver removes foreign objects: %+v", other)
	}
}

func applyDiff(t *testing.T, st *cluster.State, d *cluster.InventoryDiff) *cluster.State {
	t.Helper()
	next := st.Snapshot()
	if err := next.Apply(d, 0); err != nil {
		t.Fatal(err)
	}
	return next
}

func TestInventoryDiffKeepsTheRunningCopyOfADuplicate(t *testing.T) {
	now := time.Now()
	st := cluster.NewState()
	st = applyDiff(t, st, &cluster.InventoryDiff{Driver: "kvm", UpsertVMs: []cluster.VM{{ID: "a", Name: "web", Host: "h1", Power: cluster.PoweredOn}}})
	for _, order := range [][]drivers.VM{
		{{ID: "a", Name: "web", Host: "h1", Power: drivers.PoweredOn}, {ID: "a", Name: "web", Host: "h2", Power: drivers.Suspended}},
		{{ID: "a", Name: "web", Host: "h2", Power: drivers.Suspended}, {ID: "a", Name: "web", Host: "h1", Power: drivers.PoweredOn}},
	} {
		d := InventoryDiff("kvm", st, &drivers.Inventory{VMs: order}, now)
		if len(d.UpsertVMs) != 0 || len(d.RemoveVMs) != 0 {
			t.Fatalf("a paused copy on another host changed the VM: %+v", d)
		}
		if len(d.Events) != 1 || d.Events[0].Type != "inventory.vm_duplicate" || d.Events[0].Host != "h2" {
			t.Fatalf("duplicate not reported: %+v", d.Events)
		}
		if n := countDuplicates(&drivers.Inventory{VMs: order}); n != 1 {
			t.Fatalf("countDuplicates = %d, want 1", n)
		}
	}
}

// TestInventoryDiffKeepsPowerOfADownHost: the VMs of a host that is dead,
// fenced or not connected keep the power state they had, whatever the
// manager says after a fence (or self-fencing) switched them off:
// recovery starts what ran.
func TestInventoryDiffKeepsPowerOfADownHost(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	inv := &drivers.Inventory{
		Hosts: []drivers.Host{{Name: "h1", MemoryBytes: 64 << 30, CPUs: 16, Connection: drivers.Connected}},
		VMs:   []drivers.VM{{ID: "a", Name: "web", Host: "h1", MemoryBytes: 2 << 30, VCPUs: 2, Power: drivers.PoweredOn}},
	}
	for _, tc := range []struct {
		health  cluster.Health
		conn    drivers.Connection
		changed bool
	}{
		{cluster.HealthDead, drivers.NotResponding, false},
		{cluster.HealthFenced, drivers.Connected, false},
		{cluster.HealthSuspect, drivers.NotResponding, false},
		{cluster.HealthAlive, drivers.Disconnected, false},
		{cluster.HealthAlive, drivers.Connected, true},
	} {
		st := applyDiff(t, cluster.NewState(), InventoryDiff("dc", cluster.NewState(), inv, now))
		if err := st.Apply(&cluster.SetHostHealth{Host: "h1", Health: tc.health}, 2); err != nil {
			t.Fatal(err)
		}
		off := &drivers.Inventory{Hosts: []drivers.Host{inv.Hosts[0]}, VMs: []drivers.VM{inv.VMs[0]}}
		off.Hosts[0].Connection = tc.conn
		off.VMs[0].Power = drivers.PoweredOff
		d := InventoryDiff("dc", st, off, now)
		if changed := len(d.UpsertVMs) > 0; changed != tc.changed {
			t.Errorf("host %s, %s: power change recorded %v, want %v", tc.health, tc.conn, changed, tc.changed)
		}
	}
}
