package vsphere

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/herd-project/herd/drivers"
)

const gib = int64(1) << 30

// newTestDriver starts a simulator and a driver logged in to it over SOAP.
func newTestDriver(t testing.TB, cfg SimConfig) (*Simulator, *Driver) {
	t.Helper()
	start := time.Now()
	sim, err := StartSimulator(cfg)
	if err != nil {
		t.Fatalf("StartSimulator(%+v): %v", cfg, err)
	}
	t.Cleanup(sim.Close)
	t.Logf("simulator %+v started in %v", cfg, time.Since(start))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := New(ctx, sim.Config(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return sim, d
}

// injectFault makes the simulator answer the next call of method on the
// object named object (or "*") with f.
func injectFault(sim *Simulator, method, object string, f types.BaseMethodFault) {
	sim.model.Service.AddFaultRule(&simulator.FaultInjectionRule{
		MethodName:  method,
		ObjectType:  "*",
		ObjectName:  object,
		Probability: 1,
		FaultType:   simulator.FaultTypeCustom,
		Fault:       f,
		MaxCount:    1,
		Enabled:     true,
	})
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func inventory(t *testing.T, d *Driver) *drivers.Inventory {
	t.Helper()
	inv, err := d.Inventory(testContext(t))
	if err != nil {
		t.Fatalf("Inventory: %v", err)
	}
	return inv
}

// vmNamed finds a VM in a fresh inventory; ok is false when it is gone.
func vmNamed(t *testing.T, d *Driver, name string) (drivers.VM, bool) {
	t.Helper()
	for _, vm := range inventory(t, d).VMs {
		if vm.Name == name {
			return vm, true
		}
	}
	return drivers.VM{}, false
}

func mustVM(t *testing.T, d *Driver, name string) drivers.VM {
	t.Helper()
	vm, ok := vmNamed(t, d, name)
	if !ok {
		t.Fatalf("no VM named %s", name)
	}
	return vm
}

func TestInventory(t *testing.T) {
	t.Parallel()
	sim, d := newTestDriver(t, SimConfig{Hosts: 4, VMs: 32})
	inv := inventory(t, d)
	names := sim.HostNames()

	if len(inv.Hosts) != 4 {
		t.Fatalf("got %d hosts, want 4", len(inv.Hosts))
	}
	for i, h := range inv.Hosts {
		want := drivers.Host{Name: names[i], Group: "DC0_C0", MemoryBytes: 256 * gib,
			CPUs: simHostThreads, CPUMHz: simHostMHz * simHostCores, Connection: drivers.Connected}
		if h != want {
			t.Errorf("host %d = %+v, want %+v", i, h, want)
		}
	}

	if len(inv.VMs) != 32 {
		t.Fatalf("got %d VMs, want 32", len(inv.VMs))
	}
	ids := make(map[string]bool)
	off := 0
	for i, vm := range inv.VMs {
		want := drivers.VM{
			ID:          vm.ID,
			Name:        fmt.Sprintf("vm-%03d", i+1),
			Host:        names[i%4],
			MemoryBytes: gib << (i % 5),
			VCPUs:       1 + i%8,
			Power:       drivers.PoweredOn,
			Definition:  vm.Definition,
		}
		if i%8 == 7 {
			want.Power = drivers.PoweredOff
			off++
		}
		if vm.Name != want.Name || vm.Host != want.Host || vm.MemoryBytes != want.MemoryBytes ||
			vm.VCPUs != want.VCPUs || vm.Power != want.Power || vm.Unmovable != "" {
			t.Errorf("VM %d = %+v, want %+v", i, vm, want)
		}
		if vm.ID == "" || ids[vm.ID] {
			t.Errorf("VM %s has empty or duplicate ID %q", vm.Name, vm.ID)
		}
		ids[vm.ID] = true
		var def definition
		if err := json.Unmarshal(vm.Definition, &def); err != nil {
			t.Fatalf("definition of %s: %v", vm.Name, err)
		}
		if def.Name != vm.Name || def.MemoryMB<<20 != vm.MemoryBytes || int(def.NumCPU) != vm.VCPUs || def.Datastore == "" {
			t.Errorf("definition of %s = %+v", vm.Name, def)
		}
	}
	if off != 4 {
		t.Errorf("%d VMs powered off, want 4", off)
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	sim, d := newTestDriver(t, SimConfig{Hosts: 3, VMs: 16})
	names := sim.HostNames()
	// vm-001 runs on host 0; vm-008 is off on host 1; vm-016 is off on host 0.
	tests := []struct {
		name, vm, target string
		kind             drivers.MigrationKind
		wantErr          error // nil: must succeed; errAny: any error
		wantPower        drivers.PowerState
	}{
		{"live running VM", "vm-001", names[2], drivers.Live, nil, drivers.PoweredOn},
		{"offline stopped VM", "vm-008", names[0], drivers.Offline, nil, drivers.PoweredOff},
		{"unknown target", "vm-002", "no-such-host", drivers.Live, drivers.ErrNotFound, drivers.PoweredOn},
		{"live stopped VM", "vm-016", names[1], drivers.Live, errAny, drivers.PoweredOff},
		{"offline running VM", "vm-003", names[0], drivers.Offline, errAny, drivers.PoweredOn},
		{"unknown kind", "vm-004", names[0], "teleport", drivers.ErrNotSupported, drivers.PoweredOn},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := mustVM(t, d, tc.vm)
			err := d.Migrate(testContext(t), before.ID, tc.target, tc.kind)
			after := mustVM(t, d, tc.vm)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Migrate: %v", err)
			case tc.wantErr == nil && after.Host != tc.target:
				t.Errorf("after migration %s is on %s, want %s", tc.vm, after.Host, tc.target)
			case tc.wantErr != nil && err == nil:
				t.Fatalf("Migrate succeeded, want error")
			case tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Errorf("Migrate error %v, want %v", err, tc.wantErr)
			case tc.wantErr != nil && after.Host != before.Host:
				t.Errorf("failed migration moved %s from %s to %s", tc.vm, before.Host, after.Host)
			}
			if after.Power != tc.wantPower {
				t.Errorf("%s is %s after migration, want %s", tc.vm, after.Power, tc.wantPower)
			}
		})
	}

	t.Run("unknown VM", func(t *testing.T) {
		err := d.Migrate(testContext(t), "00000000-0000-0000-0000-000000000000", names[0], drivers.Live)
		if !errors.Is(err, drivers.ErrNotFound) {
			t.Errorf("Migrate of unknown VM: %v, want ErrNotFound", err)
		}
	})
}

var errAny = errors.New("any error")

func TestPower(t *testing.T) {
	t.Parallel()
	_, d := newTestDriver(t, SimConfig{Hosts: 2, VMs: 8})
	id := mustVM(t, d, "vm-001").ID
	steps := []struct {
		name string
		do   func(context.Context, string) error
		want drivers.PowerState
	}{
		{"power off", d.PowerOff, drivers.PoweredOff},
		{"power off again", d.PowerOff, drivers.PoweredOff},
		{"power on", d.PowerOn, drivers.PoweredOn},
		{"power on again", d.PowerOn, drivers.PoweredOn},
	}
	for _, s := range steps {
		if err := s.do(testContext(t), id); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := mustVM(t, d, "vm-001").Power; got != s.want {
			t.Fatalf("after %s the VM is %s, want %s", s.name, got, s.want)
		}
	}
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	sim, d := newTestDriver(t, SimConfig{Hosts: 2, VMs: 8})
	tests := []struct {
		name    string
		vm      string
		timeout time.Duration
		fault   types.BaseMethodFault // injected into ShutdownGuest
	}{
		{"guest shutdown", "vm-001", 20 * time.Second, nil},
		{"deadline near: power off", "vm-002", time.Second, nil},
		{"no guest tools: power off", "vm-003", 20 * time.Second, &types.ToolsUnavailable{}},
		{"already off", "vm-008", 20 * time.Second, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fault != nil {
				injectFault(sim, "ShutdownGuest", tc.vm, tc.fault)
			}
			ctx, cancel := context.WithTimeout(t.Context(), tc.timeout)
			defer cancel()
			id := mustVM(t, d, tc.vm).ID
			start := time.Now()
			if err := d.Shutdown(ctx, id); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			// No case should wait for the deadline: the guest stops at once
			// or the fallback powers off without waiting.
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("Shutdown took %v", took)
			}
			if got := mustVM(t, d, tc.vm).Power; got != drivers.PoweredOff {
				t.Errorf("after Shutdown %s is %s", tc.vm, got)
			}
		})
	}
}

// fenceSimHost leaves host as a power fence does: its VMs off, vCenter
// without a connection to it.
func fenceSimHost(t *testing.T, sim *Simulator, host string) {
	t.Helper()
	if _, err := sim.PowerOffHost(host); err != nil {
		t.Fatal(err)
	}
	if err := sim.SetHostConnection(host, drivers.NotResponding); err != nil {
		t.Fatal(err)
	}
}

// uuids reads a VM's config.uuid and config.instanceUuid over SOAP.
func uuids(t *testing.T, d *Driver, id string) (string, string) {
	t.Helper()
	ctx := testContext(t)
	d.forgetVM(id)
	ref, err := d.vmRef(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var vm mo.VirtualMachine
	if err := property.DefaultCollector(d.client.Client).RetrieveOne(ctx, ref, []string{"config.uuid", "config.instanceUuid"}, &vm); err != nil {
		t.Fatal(err)
	}
	return vm.Config.Uuid, vm.Config.InstanceUuid
}

// TestRecreateKeepsIdentity: a VM recreated after its host was fenced is
// the same VM — same instanceUuid (its id), same uuid (what the guest
// sees), same name — and vCenter lists it once, on the target. An original
// that still runs on a connected host is never recreated. Destroy removes
// the copy on the host it names only, and keeps the files.
func TestRecreateKeepsIdentity(t *testing.T) {
	t.Parallel()
	sim, d := newTestDriver(t, SimConfig{Hosts: 4, VMs: 8})
	target := sim.HostNames()[3]
	orig := mustVM(t, d, "vm-002") // 2 GiB, 2 vCPUs, running on host 1
	wantUUID, wantInstance := uuids(t, d, orig.ID)
	if wantUUID == "" || wantInstance != orig.ID {
		t.Fatalf("original's uuid %q, instanceUuid %q, id %s", wantUUID, wantInstance, orig.ID)
	}

	if _, err := d.Recreate(testContext(t), orig.Definition, target); err == nil || !strings.Contains(err.Error(), "runs on host") {
		t.Fatalf("Recreate of a VM running on a connected host: %v, want a refusal", err)
	}
	fenceSimHost(t, sim, orig.Host)

	for range 2 { // the second call is a resumed step: it finds the first one's VM
		id, err := d.Recreate(testContext(t), orig.Definition, target)
		if err != nil {
			t.Fatalf("Recreate: %v", err)
		}
		if id != orig.ID {
			t.Fatalf("Recreate returned id %s, want the original's %s", id, orig.ID)
		}
		copies := inventory(t, d).Copies(id)
		if len(copies) != 1 {
			t.Fatalf("vCenter lists %d copies of %s (%+v), want 1", len(copies), id, copies)
		}
		got := copies[0]
		if got.Name != "vm-002" || got.Host != target || got.MemoryBytes != orig.MemoryBytes ||
			got.VCPUs != orig.VCPUs || got.Power != drivers.PoweredOff {
			t.Errorf("recreated VM %+v, want vm-002 on %s, %d bytes, %d vCPUs, stopped",
				got, target, orig.MemoryBytes, orig.VCPUs)
		}
		if u, inst := uuids(t, d, id); u != wantUUID || inst != wantInstance {
			t.Errorf("recreated VM has uuid %s, instanceUuid %s; want %s, %s", u, inst, wantUUID, wantInstance)
		}
	}

	if _, err := d.Recreate(testContext(t), []byte(`{"name":"x"}`), target); err == nil {
		t.Error("Recreate from an incomplete definition succeeded")
	}
	if _, err := d.Recreate(testContext(t), orig.Definition, "no-such-host"); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("Recreate on unknown host: %v, want ErrNotFound", err)
	}

	// Destroy names the host: not the fenced one (the VM is on target).
	ctx := testContext(t)
	ref, err := d.vmRef(ctx, orig.ID)
	if err != nil {
		t.Fatal(err)
	}
	var mvm mo.VirtualMachine
	if err := property.DefaultCollector(d.client.Client).RetrieveOne(ctx, ref, []string{"config.files.vmPathName"}, &mvm); err != nil {
		t.Fatal(err)
	}
	vmx := mvm.Config.Files.VmPathName
	stat := func() error {
		var p object.DatastorePath
		if !p.FromString(vmx) {
			return fmt.Errorf("bad path %q", vmx)
		}
		ds, err := find.NewFinder(d.client.Client).Datastore(ctx, p.Datastore)
		if err != nil {
			return err
		}
		_, err = ds.Stat(ctx, p.Path)
		return err
	}
	if err := d.Destroy(testContext(t), orig.ID, orig.Host); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("Destroy on the fenced host: %v, want ErrNotFound", err)
	}
	if len(inventory(t, d).Copies(orig.ID)) != 1 {
		t.Fatal("Destroy on the fenced host removed the recreated VM")
	}
	if err := d.Destroy(testContext(t), orig.ID, target); err != nil {
		t.Fatalf("Destroy on %s: %v", target, err)
	}
	if len(inventory(t, d).Copies(orig.ID)) != 0 {
		t.Error("VM still listed after Destroy")
	}
	if err := stat(); err != nil {
		t.Errorf("%s after Destroy: %v (its files are gone)", vmx, err)
	}
	if err := d.Destroy(testContext(t), orig.ID, target); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("second Destroy: %v, want ErrNotFound", err)
	}
	if n := len(inventory(t, d).VMs); n != 7 {
		t.Errorf("%d VMs left, want 7", n)
	}
}

func TestProbeHost(t *testing.T) {
	t.Parallel()
	sim, d := newTestDriver(t, SimConfig{Hosts: 2, VMs: 2})
	host := sim.HostNames()[0]
	for _, state := range []drivers.Connection{drivers.Connected, drivers.NotResponding, drivers.Disconnected, drivers.Connected} {
		if err := sim.SetHostConnection(host, state); err != nil {
			t.Fatalf("SetHostConnection(%s): %v", state, err)
		}
		got, err := d.ProbeHost(testContext(t), host)
		if err != nil || got != state {
			t.Errorf("ProbeHost after SetHostConnection(%s) = %q, %v", state, got, err)
		}
		if h := inventory(t, d).Hosts[0]; h.Connection != state {
			t.Errorf("Inventory shows %s as %s, want %s", host, h.Connection, state)
		}
	}
	if _, err := d.ProbeHost(testContext(t), "no-such-host"); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("ProbeHost of unknown host: %v, want ErrNotFound", err)
	}
	if err := sim.SetHostConnection("no-such-host", drivers.Connected); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("SetHostConnection of unknown host: %v, want ErrNotFound", err)
	}
}

func TestTwoSimulators(t *testing.T) {
	t.Parallel()
	simA, a := newTestDriver(t, SimConfig{Hosts: 2, VMs: 4})
	_, b := newTestDriver(t, SimConfig{Hosts: 3, VMs: 6})
	vm := mustVM(t, a, "vm-001")
	if err := a.Migrate(testContext(t), vm.ID, simA.HostNames()[1], drivers.Live); err != nil {
		t.Fatalf("Migrate in simulator A: %v", err)
	}
	invB := inventory(t, b)
	if len(invB.Hosts) != 3 || len(invB.VMs) != 6 || invB.VMs[0].Host != invB.Hosts[0].Name {
		t.Errorf("simulator B changed with A: %d hosts, %d VMs, vm-001 on %s",
			len(invB.Hosts), len(invB.VMs), invB.VMs[0].Host)
	}
	if got := mustVM(t, a, "vm-001").Host; got != simA.HostNames()[1] {
		t.Errorf("vm-001 in A is on %s, want %s", got, simA.HostNames()[1])
	}
}

// BenchmarkInventory measures Inventory over 50 hosts and 1,000 VMs. The
// simulator is built once, before the timed loop.
func BenchmarkInventory(b *testing.B) {
	_, d := newTestDriver(b, SimConfig{Hosts: 50, VMs: 1000})
	ctx := context.Background()
	for b.Loop() {
		inv, err := d.Inventory(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(inv.VMs) != 1000 {
			b.Fatalf("got %d VMs", len(inv.VMs))
		}
	}
}

// autostartList reads, over SOAP, the VMs in host's automatic startup list.
func autostartList(t *testing.T, d *Driver, host string) []types.ManagedObjectReference {
	t.Helper()
	ctx := testContext(t)
	h, err := d.host(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	pc := property.DefaultCollector(d.client.Client)
	var hs mo.HostSystem
	if err := pc.RetrieveOne(ctx, h.ref, []string{"configManager.autoStartManager"}, &hs); err != nil {
		t.Fatal(err)
	}
	var m mo.HostAutoStartManager
	if err := pc.RetrieveOne(ctx, *hs.ConfigManager.AutoStartManager, []string{"config"}, &m); err != nil {
		t.Fatal(err)
	}
	var out []types.ManagedObjectReference
	for _, p := range m.Config.PowerInfo {
		out = append(out, p.Key)
	}
	return out
}

// TestAutostart: SetAutostart adds a VM to its host's automatic startup
// (HostAutoStartManager) and removes it; the inventory reports it.
func TestAutostart(t *testing.T) {
	t.Parallel()
	_, d := newTestDriver(t, SimConfig{Hosts: 2, VMs: 4})
	vm := mustVM(t, d, "vm-002")
	if vm.Autostart || len(autostartList(t, d, vm.Host)) != 0 {
		t.Fatalf("a new simulator starts %s automatically", vm.Name)
	}
	ref, err := d.vmRef(testContext(t), vm.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, on := range []bool{true, false, false} {
		if err := d.SetAutostart(testContext(t), vm.ID, on); err != nil {
			t.Fatalf("SetAutostart(%v): %v", on, err)
		}
		if got := mustVM(t, d, vm.Name).Autostart; got != on {
			t.Errorf("after SetAutostart(%v) the inventory says %v", on, got)
		}
		if listed := slices.Contains(autostartList(t, d, vm.Host), ref); listed != on {
			t.Errorf("after SetAutostart(%v) the host's autostart list has it: %v", on, listed)
		}
		if mustVM(t, d, "vm-001").Autostart {
			t.Error("another VM starts automatically")
		}
	}
	if err := d.SetAutostart(testContext(t), "no-such-vm", false); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("SetAutostart of an unknown VM: %v, want ErrNotFound", err)
	}
}
