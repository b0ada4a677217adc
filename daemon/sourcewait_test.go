package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/policy"
)

// TestEvacuationWaitsForItsSourceConnection: while a host is evacuated,
// vCenter shows it notResponding for longer than three retry backoffs,
// and every migration from it fails meanwhile. The steps wait for the
// connection instead of burning their attempts: the evacuation completes,
// each VM tried once and moved once, and the events say the steps waited.
func TestEvacuationWaitsForItsSourceConnection(t *testing.T) {
	const backoff = time.Second // the least the policy allows
	dev := StartTestDev(t, DevOptions{Hosts: 3, VMs: 9,
		MethodDelay: map[string]int{"RelocateVM_Task": 100},
		Configure:   func(c *config.Server) { c.Inventory.SyncInterval = time.Second },
		Policy: func(p *policy.Document) {
			p.Maintenance.RetryBackoff = backoff
			// The defaults (dev mode's are shorter): the outage is no death.
			p.Health.SuspectAfter, p.Health.DeadAfter = policy.DefaultSuspectAfter, policy.DefaultDeadAfter
		},
	})
	c, err := api.NewClient(dev.APIAddr(), "")
	if err != nil {
		t.Fatal(err)
	}
	waitInventory(t, c, 3, 9)
	ctx := context.Background()
	src := busiestHost(t, c)
	vms, err := c.VMs(ctx, src.Name)
	if err != nil || len(vms) < 2 {
		t.Fatalf("VMs on %s: %d, %v", src.Name, len(vms), err)
	}

	ref, err := c.Maintenance(ctx, src.Name, api.MaintenanceRequest{Status: "enable", Migrate: "all"})
	if err != nil {
		t.Fatal(err)
	}
	// The outage: vCenter shows the host notResponding, and a migration
	// from it fails, as it does in vCenter.
	if err := dev.Sim.SetHostConnection(src.Name, drivers.NotResponding); err != nil {
		t.Fatal(err)
	}
	for _, vm := range vms {
		dev.Sim.InjectFault("RelocateVM_Task", vm.Name, "host "+src.Name+" is not responding")
	}
	outage := time.Now()
	// Longer than three attempts with their backoffs, shorter than dead_after.
	for time.Since(outage) < 4*backoff {
		if op, err := c.Operation(ctx, ref.Operation); err == nil && op.State.Terminal() {
			break // the old behaviour: the attempts are gone
		}
		time.Sleep(50 * time.Millisecond)
	}
	dev.Sim.ClearFaults()
	if err := dev.Sim.SetHostConnection(src.Name, drivers.Connected); err != nil {
		t.Fatal(err)
	}

	op := waitOp(t, c, ref.Operation, 60*time.Second)
	if op.State != api.OpSucceeded {
		t.Fatalf("evacuation after a %s outage of its host's connection: %s (%s)", time.Since(outage).Round(time.Millisecond), op.State, op.Error)
	}
	events := opEvents(t, c, ref.Operation)
	done, waited := map[string]int{}, 0
	for _, e := range events {
		switch e.Type {
		case "step.done":
			done[e.VM]++
		case "step.waiting":
			waited++
			if !strings.Contains(e.Message, "migration_timeout") || !strings.Contains(e.Message, "not counted") {
				t.Errorf("waiting event does not say how long and that it is not counted: %s", e.Message)
			}
		}
	}
	if waited == 0 {
		t.Errorf("no step waited for the connection: the outage was not hit; events %+v", events)
	}
	seen := driverVMs(t, dev.Sim)
	for _, it := range op.Items {
		if it.State != api.ItemDone || it.Attempts != 1 {
			t.Errorf("VM %s: %s after %d attempts (source losses %d), want done after 1", it.Name, it.State, it.Attempts, it.SourceLosses)
		}
		if done[it.VM] != 1 {
			t.Errorf("VM %s moved %d times, want once", it.Name, done[it.VM])
		}
		if vm, ok := seen[it.VM]; !ok || vm.Host == src.Name || vm.Host != it.Target {
			t.Errorf("VM %s is on %q in vCenter, want on its target %s", it.Name, vm.Host, it.Target)
		}
	}
}
