package daemon

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/internal/testutil"
)

// heldInventory is a driver whose next inventory, once armed, is held
// after it was read: a slow inventory whose result arrives late.
type heldInventory struct {
	drivers.Driver
	mu      sync.Mutex
	armed   bool
	read    chan *drivers.Inventory // the held read, once done
	release chan struct{}
}

func (h *heldInventory) Inventory(ctx context.Context) (*drivers.Inventory, error) {
	inv, err := h.Driver.Inventory(ctx)
	h.mu.Lock()
	held := h.armed && err == nil
	h.armed = false
	h.mu.Unlock()
	if held {
		h.read <- inv
		<-h.release
	}
	return inv, err
}

// An inventory read before a migration finished and written after it must
// not move the VM back: the step is newer than the read.
func TestSlowInventoryRacingAMigrationNeverMovesTheVMBack(t *testing.T) {
	held := &heldInventory{read: make(chan *drivers.Inventory, 1), release: make(chan struct{})}
	opts := testOptions(t)
	opts.DriverFactory = func(ctx context.Context, dc config.Driver, log *slog.Logger) (drivers.Driver, error) {
		d, err := openDriver(ctx, dc, log)
		if err != nil {
			return nil, err
		}
		held.Driver = d
		return held, nil
	}
	dev := startTestDevOpts(t, DevOptions{Hosts: 3, VMs: 6, MethodDelay: map[string]int{"RelocateVM_Task": 1500}}, opts)
	c, err := api.NewClient(dev.APIAddr(), "")
	if err != nil {
		t.Fatal(err)
	}
	waitInventory(t, c, 3, 6)
	ctx := context.Background()
	var vm api.VMView
	vms, _ := c.VMs(ctx, "")
	for _, v := range vms {
		if v.Power == api.PoweredOn {
			vm = v
			break
		}
	}
	target := dev.Sim.HostNames()[0]
	if target == vm.Host {
		target = dev.Sim.HostNames()[1]
	}
	ref, err := c.MigrateVM(ctx, vm.ID, api.MigrateRequest{TargetHost: target})
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "the migration step to start", func() bool {
		op, err := c.Operation(ctx, ref.Operation)
		return err == nil && op.Running == 1
	})
	// The slow inventory reads now, while the VM is still on its source.
	held.mu.Lock()
	held.armed = true
	held.mu.Unlock()
	synced := make(chan error, 1)
	go func() {
		_, err := dev.SyncInventory(ctx, "dev")
		synced <- err
	}()
	inv := <-held.read
	for _, v := range inv.VMs {
		if v.ID == vm.ID && v.Host != vm.Host {
			t.Fatalf("the held read already sees %s on %s", vm.Name, v.Host)
		}
	}
	if op := waitOp(t, c, ref.Operation, 20*time.Second); op.State != api.OpSucceeded {
		t.Fatalf("migration: %+v", *op)
	}
	finished := dev.Node().FSM().State().Index
	close(held.release)
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	st := dev.Node().FSM().State()
	if got := st.VMs[vm.ID].Host; got != target {
		t.Fatalf("after the late inventory, state has %s on %s, want %s (where the step put it)", vm.Name, got, target)
	}
	for _, e := range st.Events {
		if e.VM == vm.ID && e.Type == "inventory.vm_moved" && e.Seq > 0 && strings.Contains(e.Message, "now on "+vm.Host) {
			t.Fatalf("late inventory logged the VM moving back: %s", e.Message)
		}
	}
	// A later read (after the step) is believed again.
	if _, err := dev.SyncInventory(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
	if dev.Node().FSM().State().Index < finished {
		t.Fatal("index went back")
	}
	if got := dev.Node().FSM().State().VMs[vm.ID].Host; got != target {
		t.Fatalf("a fresh inventory has %s on %s, want %s", vm.Name, got, target)
	}
}
