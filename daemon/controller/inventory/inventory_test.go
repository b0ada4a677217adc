package inventory

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
	first := Diff("dc", st, inv, now)
	if len(first.UpsertHosts) != 2 || len(first.UpsertVMs) != 2 || len(first.RemoveHosts)+len(first.RemoveVMs) != 0 {
		t.Fatalf("first diff: %+v", first)
	}
	if len(first.Events) != 4 {
		t.Fatalf("first diff events: %d", len(first.Events))
	}

	// Apply it, then the same inventory again: nothing to write.
	st = applyDiff(t, st, first)
	if again := Diff("dc", st, inv, now.Add(time.Minute)); !again.Empty() || len(again.Events) != 0 {
		t.Fatalf("no-change sync wrote %+v", again)
	}

	// A move, a power change, a removed VM, a removed host, a host that stops responding.
	inv.VMs[0].Host = "h2"
	inv.VMs[1].Power = drivers.PoweredOn
	inv.VMs = inv.VMs[:2]
	inv.Hosts[0].Connection = drivers.NotResponding
	inv.Hosts = append(inv.Hosts, drivers.Host{Name: "h3", Group: "c1", MemoryBytes: 32 << 30, Connection: drivers.Connected})
	st = applyDiff(t, st, &cluster.InventoryDiff{Driver: "dc", UpsertVMs: []cluster.VM{{ID: "gone", Name: "old", Host: "h1", Driver: "dc"}}})
	d := Diff("dc", st, inv, now.Add(2*time.Minute))
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
	other := Diff("other", st, &drivers.Inventory{}, now)
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
		d := Diff("kvm", st, &drivers.Inventory{VMs: order}, now)
		if len(d.UpsertVMs) != 0 || len(d.RemoveVMs) != 0 {
			t.Fatalf("a paused copy on another host changed the VM: %+v", d)
		}
		if len(d.Events) != 1 || d.Events[0].Type != "inventory.vm_duplicate" || d.Events[0].Host != "h2" {
			t.Fatalf("duplicate not reported: %+v", d.Events)
		}
		inv := &drivers.Inventory{Hosts: []drivers.Host{{Name: "h1", Connection: drivers.Connected}, {Name: "h2", Connection: drivers.Connected}}, VMs: order}
		if n := countDuplicates(st, inv); n != 1 {
			t.Fatalf("countDuplicates = %d, want 1", n)
		}
	}
}

// TestInventoryDiffStaleCopies: a recovered VM keeps its id, so its fenced
// host (or the manager's memory of it) still lists a copy of that id. That
// copy is the VM's stale copy, not the VM: the VM stays where it was
// recreated, is listed once, and is not counted on two hosts — unless the
// stale copy is seen running on a connected host, which is exactly a VM on
// two hosts.
func TestInventoryDiffStaleCopies(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	st := cluster.NewState()
	st = applyDiff(t, st, &cluster.InventoryDiff{Driver: "kvm",
		UpsertHosts: []cluster.Host{{Name: "h1"}, {Name: "h2"}},
		UpsertVMs:   []cluster.VM{{ID: "a", Name: "web", Host: "h1", Power: cluster.PoweredOn, MemoryBytes: 1 << 30}}})
	for i, c := range []cluster.Command{
		&cluster.SetHostHealth{Host: "h1", Health: cluster.HealthDead},
		&cluster.HostFenced{Host: "h1", Method: "power", OK: true},
		&cluster.StartOperation{Op: cluster.Operation{ID: "r1", Kind: cluster.OpRecover, Host: "h1", Created: now, MaxAttempts: cluster.UnlimitedAttempts,
			Items: []cluster.OpItem{{VM: "a", Name: "web", Action: cluster.ActionRecreate, From: "h1"}}}},
		&cluster.StartItem{Op: "r1", VM: "a", Target: "h2", Time: now},
	} {
		if err := st.Apply(c, uint64(10+i)); err != nil {
			t.Fatal(err)
		}
	}
	// While its step has not ended, a VM missing from the inventory is not
	// removed (vCenter: its original is unregistered before it is created
	// again, and a creation may fail in between): its record holds the
	// definition.
	empty := &drivers.Inventory{Hosts: []drivers.Host{{Name: "h1"}, {Name: "h2"}}}
	if d := Diff("kvm", st, empty, now); len(d.RemoveVMs) != 0 {
		t.Fatalf("a VM being recreated was removed: %+v", d.RemoveVMs)
	}
	failed := st.Snapshot()
	if err := failed.Apply(&cluster.FinishItem{Op: "r1", VM: "a", Error: "create failed", Time: now}, 19); err != nil {
		t.Fatal(err)
	}
	if d := Diff("kvm", failed, empty, now); len(d.RemoveVMs) != 0 {
		t.Fatalf("a VM whose recreation failed was removed: %+v", d.RemoveVMs)
	}
	if err := st.Apply(&cluster.FinishItem{Op: "r1", VM: "a", OK: true, NewID: "a", Time: now}, 20); err != nil {
		t.Fatal(err)
	}
	if vm := st.VMs["a"]; vm == nil || vm.Host != "h2" || len(st.VMs) != 1 || len(st.StaleOn("h1")) != 1 {
		t.Fatalf("after recovery: VMs %+v, stale %+v", st.VMs, st.StaleCopies)
	}
	hosts := func(c1 drivers.Connection) []drivers.Host {
		return []drivers.Host{{Name: "h1", Connection: c1}, {Name: "h2", Connection: drivers.Connected}}
	}
	for _, tc := range []struct {
		name  string
		conn  drivers.Connection
		power drivers.PowerState
		dups  int
	}{
		{"fenced host, remembered running", drivers.NotResponding, drivers.PoweredOn, 0},
		{"returned host, shut off", drivers.Connected, drivers.PoweredOff, 0},
		{"returned host, running", drivers.Connected, drivers.PoweredOn, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := &drivers.Inventory{Hosts: hosts(tc.conn), VMs: []drivers.VM{
				{ID: "a", Name: "web", Host: "h1", MemoryBytes: 1 << 30, Power: tc.power},
				{ID: "a", Name: "web", Host: "h2", MemoryBytes: 1 << 30, Power: drivers.PoweredOn},
			}}
			d := Diff("kvm", st, inv, now)
			if len(d.UpsertVMs) != 0 || len(d.RemoveVMs) != 0 {
				t.Errorf("the stale copy changed the VM: %+v", d)
			}
			for _, e := range d.Events {
				if e.Type == "inventory.vm_duplicate" || e.Type == "inventory.vm_moved" {
					t.Errorf("stale copy taken for the VM: %+v", e)
				}
			}
			if n := countDuplicates(st, inv); n != tc.dups {
				t.Errorf("countDuplicates = %d, want %d", n, tc.dups)
			}
		})
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
		st := applyDiff(t, cluster.NewState(), Diff("dc", cluster.NewState(), inv, now))
		if err := st.Apply(&cluster.SetHostHealth{Host: "h1", Health: tc.health}, 2); err != nil {
			t.Fatal(err)
		}
		off := &drivers.Inventory{Hosts: []drivers.Host{inv.Hosts[0]}, VMs: []drivers.VM{inv.VMs[0]}}
		off.Hosts[0].Connection = tc.conn
		off.VMs[0].Power = drivers.PoweredOff
		d := Diff("dc", st, off, now)
		if changed := len(d.UpsertVMs) > 0; changed != tc.changed {
			t.Errorf("host %s, %s: power change recorded %v, want %v", tc.health, tc.conn, changed, tc.changed)
		}
	}
}

// A definition the driver reports again unchanged is not written again; a
// changed one is, compressed, and reads back as the driver gave it.
func TestInventoryDiffDefinitions(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	xml := []byte("<domain type='kvm'><name>web</name><devices><disk/></devices></domain>")
	inv := &drivers.Inventory{
		Hosts: []drivers.Host{{Name: "h1", MemoryBytes: 64 << 30, CPUs: 16, Connection: drivers.Connected}},
		VMs:   []drivers.VM{{ID: "a", Name: "web", Host: "h1", MemoryBytes: 2 << 30, VCPUs: 2, Power: drivers.PoweredOn, Definition: xml}},
	}
	st := applyDiff(t, cluster.NewState(), Diff("dc", cluster.NewState(), inv, now))
	if got, err := st.VMs["a"].Definition.Bytes(); err != nil || string(got) != string(xml) {
		t.Fatalf("stored definition %q (%v)", got, err)
	}
	inv.VMs[0].Definition = append([]byte{}, xml...) // same bytes, another slice
	if d := Diff("dc", st, inv, now.Add(time.Minute)); !d.Empty() {
		t.Fatalf("an unchanged definition was written again: %+v", d.UpsertVMs)
	}
	changed := []byte("<domain type='kvm'><name>web</name><devices><disk/><disk/></devices></domain>")
	inv.VMs[0].Definition = changed
	d := Diff("dc", st, inv, now.Add(2*time.Minute))
	if len(d.UpsertVMs) != 1 || !d.UpsertVMs[0].Definition.Is(changed) {
		t.Fatalf("a changed definition was not written: %+v", d.UpsertVMs)
	}
}
