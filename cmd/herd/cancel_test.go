package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/daemontest"
	"github.com/herd-project/herd/internal/testutil"
)

// TestCLICancelSaysStopping: herd op cancel of an evacuation with a step
// in flight says it is stopping (not running), a second cancel says the
// same, and the host ends in maintenance cancelled, not error.
func TestCLICancelSaysStopping(t *testing.T) {
	dev := daemontest.StartDev(t, daemon.DevOptions{Hosts: 3, VMs: 9, MethodDelay: map[string]int{"RelocateVM_Task": 1500}})
	c, _ := api.NewClient(dev.APIAddr(), "")
	ctx := context.Background()
	var hosts []api.Host
	testutil.WaitFor(t, 20*time.Second, "inventory", func() bool {
		hosts, _ = c.Hosts(ctx)
		return len(hosts) == 3 && hosts[0].VMs > 1
	})
	ref, err := c.Maintenance(ctx, hosts[0].Name, api.MaintenanceRequest{Status: "enable", Migrate: "all"})
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "a step in flight", func() bool {
		op, _ := c.Operation(ctx, ref.Operation)
		return op != nil && op.Running > 0
	})
	addr := "--address=" + dev.APIAddr()
	for i := 0; i < 2; i++ {
		code, out, errOut := runCLI("op", "cancel", ref.Operation, addr)
		if code != 0 || strings.Contains(out, ": running") || !strings.Contains(out, "stopping") {
			t.Fatalf("op cancel #%d: exit %d %q %s", i+1, code, out, errOut)
		}
	}
	testutil.WaitFor(t, 20*time.Second, "the evacuation ends", func() bool {
		op, _ := c.Operation(ctx, ref.Operation)
		return op != nil && op.State.Terminal()
	})
	code, out, _ := runCLI("host", "show", hosts[0].Name, addr)
	if code != 0 || !strings.Contains(out, "cancelled") || strings.Contains(out, "error") {
		t.Fatalf("host after cancel: exit %d\n%s", code, out)
	}
}

// TestCLIMigrateWithoutTargetAsks: herd vm migrate without --to says where
// Herd would send the VM and starts nothing unless confirmed (--yes).
func TestCLIMigrateWithoutTargetAsks(t *testing.T) {
	dev := startDev(t, 3, 6)
	c, _ := api.NewClient(dev.APIAddr(), "")
	ctx := context.Background()
	testutil.WaitFor(t, 20*time.Second, "inventory", func() bool {
		vms, _ := c.VMs(ctx, "")
		return len(vms) == 6
	})
	addr := "--address=" + dev.APIAddr()
	code, out, errOut := runCLI("vm", "migrate", "vm-001", addr)
	if code != exitUsage || !strings.Contains(out, "Herd would live-migrate VM vm-001 from") || !strings.Contains(errOut, "--yes") {
		t.Fatalf("migrate without --to: exit %d %q %q", code, out, errOut)
	}
	if ops, _ := c.Operations(ctx, ""); len(ops) != 0 {
		t.Fatalf("migrate without --to started %d operations before confirmation", len(ops))
	}
	code, out, errOut = runCLI("vm", "migrate", "vm-001", "--yes", addr)
	if code != 0 || !strings.Contains(out, "live-migrate vm-001 from") {
		t.Fatalf("migrate --yes: exit %d %q %q", code, out, errOut)
	}
	if ops, _ := c.Operations(ctx, ""); len(ops) != 1 {
		t.Fatalf("%d operations after migrate --yes, want 1", len(ops))
	}
}
