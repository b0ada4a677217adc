package libvirt

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/drivers/libvirt/libvirttest"
)

// TestPower turns a VM off and on, twice each (the second time does
// nothing), then shuts it down: the guest (firmware only) ignores the ACPI
// request, so the domain is destroyed before ctx's deadline.
func TestPower(t *testing.T) {
	f := libvirttest.StartFixture(t, 1)
	id := f.DefineVM(t, "lv1", "pow1", 64, true)
	d := newTestDriver(t, f, nil)

	steps := []struct {
		name string
		do   func() error
		want drivers.PowerState
	}{
		{"power off", func() error { return d.PowerOff(testContext(t, 10*time.Second), id) }, drivers.PoweredOff},
		{"power off again", func() error { return d.PowerOff(testContext(t, 10*time.Second), id) }, drivers.PoweredOff},
		{"power on", func() error { return d.PowerOn(testContext(t, 10*time.Second), id) }, drivers.PoweredOn},
		{"power on again", func() error { return d.PowerOn(testContext(t, 10*time.Second), id) }, drivers.PoweredOn},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		wantState(t, f, "lv1", id, s.want)
	}

	const wait = 8 * time.Second
	start := time.Now()
	if err := d.Shutdown(testContext(t, wait), id); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	took := time.Since(start)
	if took > wait || took < wait-hardOffMargin-time.Second {
		t.Errorf("Shutdown took %v, want it to wait until about %v before its %v deadline", took, hardOffMargin, wait)
	}
	wantState(t, f, "lv1", id, drivers.PoweredOff)
	if err := d.Shutdown(testContext(t, wait), id); err != nil {
		t.Errorf("Shutdown of a shut-off VM: %v, want nil", err)
	}
}

// TestRecreate defines, from the Definition Inventory stored, a VM on
// another host, shut off and the same machine: the same UUID (so the same
// SMBIOS system UUID), name and MAC addresses as the original. Where the
// name is taken by another domain, it gets name-r1 and keeps the rest.
// Destroy and PowerOnAt act on the copy of the host they name only.
func TestRecreate(t *testing.T) {
	f := libvirttest.StartFixture(t, 3)
	id := f.DefineDomain(t, "lv1", libvirttest.VMSpec{Name: "phoenix", MemoryMiB: 80, Running: true,
		Devices: "<interface type='user'><mac address='52:54:00:13:13:01'/><model type='virtio'/></interface>"})
	f.DefineVM(t, "lv3", "phoenix", 64, false) // another domain, same name
	d := newTestDriver(t, f, nil)
	vms := inventory(t, d).Copies(id)
	if len(vms) != 1 || len(vms[0].Definition) == 0 {
		t.Fatalf("inventory lists %+v, want one VM with a definition", vms)
	}
	def := vms[0].Definition
	orig := f.DomainXMLOf(t, "lv1", id)

	tests := []struct {
		host, name string
	}{
		{"lv2", "phoenix"},
		{"lv3", "phoenix-r1"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			newID, err := d.Recreate(testContext(t, 20*time.Second), def, tt.host)
			if err != nil {
				t.Fatalf("Recreate on %s: %v", tt.host, err)
			}
			if newID != id {
				t.Errorf("Recreate returned ID %q, want the original's %s", newID, id)
			}
			wantState(t, f, tt.host, newID, drivers.PoweredOff)
			doc := f.DomainXMLOf(t, tt.host, newID)
			if !strings.Contains(doc, "<name>"+tt.name+"</name>") || !strings.Contains(doc, "<memory unit='KiB'>81920</memory>") {
				t.Errorf("recreated domain is not %s with 80 MiB:\n%s", tt.name, doc)
			}
			got, want := libvirttest.ParseIdentity(t, doc), libvirttest.ParseIdentity(t, orig)
			if got.UUID != want.UUID || got.SMBIOS != want.SMBIOS || !slices.Equal(got.MACs, want.MACs) || len(got.MACs) != 1 {
				t.Errorf("recreated domain's identity %+v, want the original's %+v", got, want)
			}
		})
	}
	wantState(t, f, "lv1", id, drivers.PoweredOn)

	// The copy on lv2 starts; the original keeps running on lv1 (the
	// caller fences it first: here both run, as PowerOnAt names its host).
	if err := d.PowerOnAt(testContext(t, 20*time.Second), id, "lv2"); err != nil {
		t.Fatalf("PowerOnAt lv2: %v", err)
	}
	wantState(t, f, "lv2", id, drivers.PoweredOn)
	wantState(t, f, "lv3", id, drivers.PoweredOff)
	if err := d.Destroy(testContext(t, 20*time.Second), id, "lv1"); err != nil {
		t.Fatalf("Destroy on lv1: %v", err)
	}
	wantState(t, f, "lv1", id, "")
	wantState(t, f, "lv2", id, drivers.PoweredOn)
	wantState(t, f, "lv3", id, drivers.PoweredOff)
}

// TestDestroy removes a running VM: it is gone from its host, and a second
// Destroy finds nothing.
func TestDestroy(t *testing.T) {
	f := libvirttest.StartFixture(t, 1)
	id := f.DefineVM(t, "lv1", "doomed", 64, true)
	keep := f.DefineVM(t, "lv1", "bystander", 64, false)
	d := newTestDriver(t, f, nil)

	if err := d.Destroy(testContext(t, 10*time.Second), id, "lv1"); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	wantState(t, f, "lv1", id, "")
	wantState(t, f, "lv1", keep, drivers.PoweredOff)
	wantKind(t, "second Destroy", d.Destroy(testContext(t, 10*time.Second), id, "lv1"), drivers.ErrNotFound)
}

// TestAutostart: the inventory reports a domain's autostart, SetAutostart
// changes it in libvirtd.
func TestAutostart(t *testing.T) {
	f := libvirttest.StartFixture(t, 1)
	id := f.DefineVM(t, "lv1", "boots", 64, false)
	d := newTestDriver(t, f, nil)
	for _, on := range []bool{true, false, true} {
		if err := d.SetAutostart(testContext(t, 10*time.Second), id, on); err != nil {
			t.Fatalf("SetAutostart %v: %v", on, err)
		}
		vms := inventory(t, d).Copies(id)
		if len(vms) != 1 || vms[0].Autostart != on {
			t.Fatalf("after SetAutostart %v the inventory says %+v", on, vms)
		}
	}
	if err := d.SetAutostart(testContext(t, 10*time.Second), "00000000-0000-0000-0000-000000000001", false); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("SetAutostart of an unknown VM: %v, want not found", err)
	}
}
