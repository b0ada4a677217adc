package raftnode

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/vmdef"
)

// A first inventory of thousands of VMs is written as bounded entries that,
// applied in order, give the state one entry gave.
func TestInventorySplitBoundsEntries(t *testing.T) {
	d := &cluster.InventoryDiff{Driver: "dc"}
	for i := 0; i < 50; i++ {
		d.UpsertHosts = append(d.UpsertHosts, cluster.Host{Name: fmt.Sprintf("h%02d", i), MemoryBytes: 1 << 40, CPUs: 64, Labels: map[string]string{"rack": "r1"}})
	}
	for i := 0; i < 3000; i++ {
		def := fmt.Sprintf("<domain><name>vm-%d</name><uuid>%08x-1</uuid>%s</domain>", i, i*7919, strings.Repeat(fmt.Sprintf("<disk file='/var/lib/%d/%d.qcow2'/>", i, i*31), 40))
		d.UpsertVMs = append(d.UpsertVMs, cluster.VM{ID: fmt.Sprintf("v%05d", i), Name: fmt.Sprintf("vm-%d", i), Host: fmt.Sprintf("h%02d", i%50),
			MemoryBytes: 1 << 30, VCPUs: 2, Power: cluster.PoweredOn, Definition: vmdef.New([]byte(def))})
	}
	d.RemoveVMs = []string{"gone-1", "gone-2"}
	d.RemoveHosts = []string{"h-old"}
	d.Events = []cluster.Event{
		{Time: time.Unix(1, 0).UTC(), Type: "inventory.host_added", Actor: "inventory-sync", Host: "h07", Message: "h07 added"},
		{Time: time.Unix(1, 0).UTC(), Type: "inventory.vm_added", Actor: "inventory-sync", Host: "h01", VM: "v02951", Message: "vm-2951 added"},
		{Time: time.Unix(1, 0).UTC(), Type: "inventory.synced", Actor: "inventory-sync", Message: "3000 VMs"},
	}
	// Events that name no VM or host of the diff: after everything, and
	// bounded like the rest.
	for i := 0; i < 2000; i++ {
		d.Events = append(d.Events, cluster.Event{Time: time.Unix(2, 0).UTC(), Type: "note", Actor: "token:ops", Host: "elsewhere", VM: "x", Message: strings.Repeat("n", 40)})
	}

	whole, err := cluster.Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	const max = 64 << 10
	parts := SplitInventory(d, max)
	if len(parts) < len(whole)/max {
		t.Fatalf("%d parts for %d bytes", len(parts), len(whole))
	}
	one, split := cluster.NewState(), cluster.NewState()
	one.Hosts["h-old"] = &cluster.Host{Name: "h-old", Driver: "dc"}
	split.Hosts["h-old"] = &cluster.Host{Name: "h-old", Driver: "dc"}
	if err := one.Apply(d, 2); err != nil {
		t.Fatal(err)
	}
	lastItems := -1 // the part with the last item (the removed host)
	for i, p := range parts {
		b, err := cluster.Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > max {
			t.Errorf("part %d: %d bytes, over %d", i, len(b), max)
		}
		if p.Driver != "dc" {
			t.Errorf("part %d lost the driver", i)
		}
		if containsHost(p, "h-old") {
			lastItems = i
		}
		for _, e := range p.Events {
			switch {
			case e.VM == "v02951" && !containsVM(p, e.VM):
				t.Errorf("part %d carries the event of VM %s, not the VM", i, e.VM)
			case e.Host == "h07" && !containsHost(p, e.Host):
				t.Errorf("part %d carries the event of host %s, not the host", i, e.Host)
			case e.Type == "inventory.synced" || e.Type == "note":
				if lastItems == -1 {
					t.Errorf("part %d carries a %s event before the last VMs and hosts", i, e.Type)
				}
			}
		}
		if err := split.Apply(p, 2); err != nil {
			t.Fatal(err)
		}
	}
	if len(split.Events) != 2003 || split.Events[2].Type != "inventory.synced" || split.Events[2002].Type != "note" {
		t.Errorf("%d events after the parts; the third %+v", len(split.Events), split.Events[2])
	}
	// Events go in the order of the parts; the rest of the state is the same.
	split.Events, one.Events = nil, nil
	if !reflect.DeepEqual(one, split) {
		t.Fatal("the parts applied in order give another state than the whole diff")
	}
	if small := (&cluster.InventoryDiff{Driver: "dc", RemoveVMs: []string{"x"}}); len(SplitInventory(small, max)) != 1 || SplitInventory(small, max)[0] != small {
		t.Error("a diff that fits is not written as it is")
	}
}

func containsVM(d *cluster.InventoryDiff, id string) bool {
	for _, vm := range d.UpsertVMs {
		if vm.ID == id {
			return true
		}
	}
	return slices.Contains(d.RemoveVMs, id)
}

func containsHost(d *cluster.InventoryDiff, name string) bool {
	for _, h := range d.UpsertHosts {
		if h.Name == name {
			return true
		}
	}
	return slices.Contains(d.RemoveHosts, name)
}

// A VM that an operation step changed after the inventory was read keeps
// what the step recorded, and its events stay out, in whichever part of a
// split inventory it comes.
func TestInventorySplitKeepsNewerSteps(t *testing.T) {
	s := cluster.NewState()
	s.Hosts["a"], s.Hosts["b"] = &cluster.Host{Name: "a", Driver: "dc"}, &cluster.Host{Name: "b", Driver: "dc"}
	s.VMs["v0001"] = &cluster.VM{ID: "v0001", Name: "moved", Host: "b", Driver: "dc", Power: cluster.PoweredOn, StepIndex: 10}
	d := &cluster.InventoryDiff{Driver: "dc", ReadIndex: 5}
	for i := 0; i < 400; i++ {
		d.UpsertVMs = append(d.UpsertVMs, cluster.VM{ID: fmt.Sprintf("v%04d", i), Name: fmt.Sprintf("vm-%d", i), Host: "a", Power: cluster.PoweredOn,
			Definition: vmdef.New([]byte(strings.Repeat(fmt.Sprintf("<disk n='%d'/>", i), 30)))})
	}
	d.Events = []cluster.Event{{Time: time.Unix(1, 0).UTC(), Type: "inventory.vm_moved", Actor: "inventory-sync", Host: "a", VM: "v0001", Message: "moved is now on a (was b)"}}
	parts := SplitInventory(d, 8<<10)
	if len(parts) < 3 {
		t.Fatalf("%d parts", len(parts))
	}
	for _, p := range parts {
		if err := s.Apply(p, 20); err != nil {
			t.Fatal(err)
		}
	}
	if vm := s.VMs["v0001"]; vm.Host != "b" || vm.Name != "moved" {
		t.Errorf("the VM a newer step moved became %+v", vm)
	}
	if len(s.VMs) != 400 || len(s.Events) != 0 {
		t.Errorf("%d VMs, events %+v", len(s.VMs), s.Events)
	}
}

// Split hands every part d's scalar fields and places each list itself: a
// list added to InventoryDiff must be placed by Split too, or every part
// would carry all of it.
func TestInventorySplitKnowsEveryList(t *testing.T) {
	placed := map[string]bool{"UpsertHosts": true, "RemoveHosts": true, "UpsertVMs": true, "RemoveVMs": true, "Events": true}
	typ := reflect.TypeOf(cluster.InventoryDiff{})
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		switch f.Type.Kind() {
		case reflect.Slice, reflect.Map, reflect.Pointer:
			if !placed[f.Name] {
				t.Errorf("InventoryDiff.%s is a list Split does not place (see split.go)", f.Name)
			}
		}
	}
}
