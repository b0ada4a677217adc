package libvirt

import (
	"strings"
	"testing"

	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/drivers/libvirt/libvirttest"
)

// TestInventory lists two real libvirtd hosts: their size and connection,
// and each domain's UUID, name, memory, vCPUs, state, XML and movability,
// including a shut-off one, one with a host device, one whose XML is too
// large to keep as its definition, and one UUID defined and running on
// both hosts.
func TestInventory(t *testing.T) {
	f := libvirttest.StartFixture(t, 2)
	run := f.DefineVM(t, "lv1", "run1", 64, true)
	off := f.DefineVM(t, "lv2", "off1", 96, false)
	pci := f.DefineDomain(t, "lv1", libvirttest.VMSpec{Name: "pci1", Devices: `<hostdev mode='subsystem' type='pci' managed='yes'>
  <source><address domain='0x0000' bus='0x00' slot='0x1f' function='0x0'/></source>
</hostdev>`})
	bigXML := strings.Replace(f.DomainXML(t, libvirttest.VMSpec{Name: "big1"}), "<vcpu>",
		"<description>"+strings.Repeat("x", MaxDefinition)+"</description>\n  <vcpu>", 1)
	big := f.DefineXML(t, "lv2", bigXML, false)
	dup := libvirttest.NewUUID()
	f.DefineDomain(t, "lv1", libvirttest.VMSpec{Name: "dup-a", UUID: dup, Running: true})
	f.DefineDomain(t, "lv2", libvirttest.VMSpec{Name: "dup-b", UUID: dup, Running: true})
	d := newTestDriver(t, f, nil)

	inv := inventory(t, d)
	for _, name := range f.HostNames() {
		h, ok := hostNamed(inv, name)
		if !ok {
			t.Fatalf("host %s missing from inventory %+v", name, inv.Hosts)
		}
		if h.Connection != drivers.Connected || h.Group != libvirttest.Group || h.MemoryBytes < 256*mib || h.CPUs < 1 || h.CPUMHz < 0 {
			t.Errorf("host %+v: want connected, group %s, memory and CPUs", h, libvirttest.Group)
		}
	}
	if len(inv.VMs) != 6 {
		t.Errorf("inventory has %d VMs, want 6: %+v", len(inv.VMs), inv.VMs)
	}
	tests := []struct {
		name, id, host string
		memory         int64
		power          drivers.PowerState
		unmovable      string
	}{
		{"run1", run, "lv1", 64 * mib, drivers.PoweredOn, ""},
		{"off1", off, "lv2", 96 * mib, drivers.PoweredOff, ""},
		{"pci1", pci, "lv1", 64 * mib, drivers.PoweredOff, "hostdev type pci"},
		{"big1", big, "lv2", 64 * mib, drivers.PoweredOff, ""},
		{"dup-a", dup, "lv1", 64 * mib, drivers.PoweredOn, ""},
		{"dup-b", dup, "lv2", 64 * mib, drivers.PoweredOn, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var vm *drivers.VM
			for _, v := range inv.Copies(tt.id) {
				if v.Host == tt.host {
					vm = &v
				}
			}
			if vm == nil {
				t.Fatalf("VM %s (%s) not listed on %s: %+v", tt.name, tt.id, tt.host, inv.Copies(tt.id))
			}
			if vm.Name != tt.name || vm.MemoryBytes != tt.memory || vm.VCPUs != 1 || vm.Power != tt.power {
				t.Errorf("VM %+v: want name %s, %d bytes, 1 vCPU, %s", *vm, tt.name, tt.memory, tt.power)
			}
			if !strings.Contains(vm.Unmovable, tt.unmovable) || (tt.unmovable == "") != (vm.Unmovable == "") {
				t.Errorf("VM %s unmovable %q, want %q", tt.name, vm.Unmovable, tt.unmovable)
			}
			def := string(vm.Definition)
			if tt.id == big {
				if def != "" {
					t.Errorf("VM %s has a %d-byte definition, want none (over %d)", tt.name, len(def), MaxDefinition)
				}
				return
			}
			if !strings.Contains(def, "<uuid>"+tt.id+"</uuid>") || !strings.Contains(def, "<name>"+tt.name+"</name>") {
				t.Errorf("VM %s definition lacks its UUID or name:\n%s", tt.name, def)
			}
		})
	}
	if n := len(inv.Copies(dup)); n != 2 {
		t.Errorf("UUID %s on two hosts listed %d times, want 2", dup, n)
	}
}
