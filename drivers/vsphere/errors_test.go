package vsphere

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/herd-project/herd/drivers"
)

// TestFaultKinds checks that vSphere faults map to drivers error kinds.
func TestFaultKinds(t *testing.T) {
	t.Parallel()
	sim, d := newTestDriver(t, SimConfig{Hosts: 2, VMs: 8})
	id := mustVM(t, d, "vm-008").ID // powered off
	tests := []struct {
		fault types.BaseMethodFault
		want  error
	}{
		{&types.ManagedObjectNotFound{}, drivers.ErrNotFound},
		{&types.NotSupported{}, drivers.ErrNotSupported},
		{&types.NotImplemented{}, drivers.ErrNotSupported},
		{&types.HostNotConnected{}, drivers.ErrUnreachable},
		{&types.HostNotReachable{}, drivers.ErrUnreachable},
	}
	for _, tc := range tests {
		injectFault(sim, "PowerOnVM_Task", "vm-008", tc.fault)
		err := d.PowerOn(testContext(t), id)
		if !errors.Is(err, tc.want) {
			t.Errorf("PowerOn failing with %T: %v, want %v", tc.fault, err, tc.want)
		}
	}
}

func TestExpiredContext(t *testing.T) {
	t.Parallel()
	sim, d := newTestDriver(t, SimConfig{Hosts: 2, VMs: 2})
	id := mustVM(t, d, "vm-001").ID
	host := sim.HostNames()[1]
	calls := map[string]func(context.Context) error{
		"Inventory": func(ctx context.Context) error { _, err := d.Inventory(ctx); return err },
		"Migrate":   func(ctx context.Context) error { return d.Migrate(ctx, id, host, drivers.Live) },
		"PowerOff":  func(ctx context.Context) error { return d.PowerOff(ctx, id) },
		"Shutdown":  func(ctx context.Context) error { return d.Shutdown(ctx, id) },
		"ProbeHost": func(ctx context.Context) error { _, err := d.ProbeHost(ctx, host); return err },
	}
	for name, call := range calls {
		ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
		err := call(ctx)
		cancel()
		if !errors.Is(err, drivers.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s with expired context: %v, want a timeout", name, err)
		}
	}
	if vm := mustVM(t, d, "vm-001"); vm.Power != drivers.PoweredOn || vm.Host != sim.HostNames()[0] {
		t.Errorf("calls with an expired context changed the VM: %+v", vm)
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	sim, err := StartSimulator(SimConfig{Hosts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	ctx := testContext(t)
	log := slog.New(slog.DiscardHandler)

	bad := sim.Config()
	bad.Password = "wrong"
	if d, err := New(ctx, bad, log); err == nil {
		d.Close()
		t.Error("New with a wrong password succeeded")
	}
	bad = sim.Config()
	bad.Datacenter = "no-such-dc"
	if d, err := New(ctx, bad, log); !errors.Is(err, drivers.ErrNotFound) {
		if d != nil {
			d.Close()
		}
		t.Errorf("New with unknown datacenter: %v, want ErrNotFound", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := Config{URL: "https://" + addr + "/sdk", Username: "u", Password: "p", Insecure: true}
	if _, err := New(ctx, cfg, log); !errors.Is(err, drivers.ErrUnreachable) {
		t.Errorf("New against a closed port: %v, want ErrUnreachable", err)
	}
}

// TestSession checks that the driver survives an expired session and a
// container view that vCenter dropped.
func TestSession(t *testing.T) {
	t.Parallel()
	_, d := newTestDriver(t, SimConfig{Hosts: 2, VMs: 4})
	ctx := testContext(t)
	inventory(t, d)

	if err := d.view.Destroy(ctx); err != nil {
		t.Fatalf("destroy view: %v", err)
	}
	if inv := inventory(t, d); len(inv.VMs) != 4 {
		t.Errorf("after the view was dropped: %d VMs, want 4", len(inv.VMs))
	}

	if err := d.client.SessionManager.Logout(ctx); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if _, err := d.Inventory(ctx); err == nil {
		t.Fatal("Inventory without a session succeeded")
	}
	if err := d.keepAlive(); err != nil {
		t.Fatalf("keepAlive: %v", err)
	}
	if inv := inventory(t, d); len(inv.VMs) != 4 {
		t.Errorf("after logging in again: %d VMs, want 4", len(inv.VMs))
	}

	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
