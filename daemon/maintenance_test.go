package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/drivers/vsphere"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

// startDevWith starts a dev server whose simulator delays some SOAP
// methods (milliseconds), with config changes.
func startDevWith(t *testing.T, hosts, vms int, delay map[string]int, pol func(*policy.Document)) (*DevServer, *api.Client) {
	t.Helper()
	dev := StartTestDev(t, DevOptions{Hosts: hosts, VMs: vms, MethodDelay: delay, Policy: pol})
	c, err := api.NewClient(dev.APIAddr(), "")
	if err != nil {
		t.Fatal(err)
	}
	waitInventory(t, c, hosts, vms)
	return dev, c
}

// waitOp waits until an operation ends.
func waitOp(t *testing.T, c *api.Client, id string, timeout time.Duration) *api.Operation {
	t.Helper()
	var op *api.Operation
	testutil.WaitFor(t, timeout, "operation "+id+" to end", func() bool {
		o, err := c.Operation(context.Background(), id)
		if err != nil {
			return false
		}
		op = o
		return o.State.Terminal()
	})
	return op
}

// hostWithVMs picks the host with the most VMs, and some of them stopped.
func busiestHost(t testing.TB, c *api.Client) api.Host {
	t.Helper()
	hosts, err := c.Hosts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(hosts, func(i, j int) bool {
		si, sj := hosts[i].VMs-hosts[i].RunningVMs, hosts[j].VMs-hosts[j].RunningVMs
		if si != sj {
			return si > sj
		}
		return hosts[i].VMs > hosts[j].VMs
	})
	return hosts[0]
}

// driverVMs is the hypervisor's own view, through a fresh session.
func driverVMs(t *testing.T, sim *vsphere.Simulator) map[string]drivers.VM {
	t.Helper()
	d, err := vsphere.New(context.Background(), sim.Config(), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	inv, err := d.Inventory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]drivers.VM{}
	for _, vm := range inv.VMs {
		out[vm.ID] = vm
	}
	return out
}

func opEvents(t *testing.T, c *api.Client, op string) []api.Event {
	t.Helper()
	return queryEvents(t, c, api.EventQuery{Operation: op})
}

func queryEvents(t testing.TB, c *api.Client, q api.EventQuery) []api.Event {
	t.Helper()
	ev, err := c.Events(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return ev.Events
}

func TestEvacuationOrderSpreadAndLimits(t *testing.T) {
	dev, c := startDevWith(t, 4, 24, map[string]int{"RelocateVM_Task": 150}, nil)
	ctx := context.Background()
	src := busiestHost(t, c)
	before, _ := c.VMs(ctx, src.Name)
	ref, err := c.Maintenance(ctx, src.Name, api.MaintenanceRequest{Status: "enable", Migrate: "all"})
	if err != nil {
		t.Fatal(err)
	}
	op := waitOp(t, c, ref.Operation, 30*time.Second)
	if op.State != api.OpSucceeded || op.Done != len(before) {
		t.Fatalf("evacuation: %+v", op)
	}
	h, _ := c.Host(ctx, src.Name)
	if h.Maintenance != api.MaintenanceOn || h.Admin != api.InMaintenance {
		t.Fatalf("host after evacuation: %+v", h)
	}
	// The hypervisor agrees: nothing is left on the host, and every VM kept
	// its power state (running ones live-migrated, stopped ones offline).
	actual := driverVMs(t, dev.Sim)
	targets := map[string]int{}
	for _, vm := range before {
		a := actual[vm.ID]
		if a.Host == src.Name || string(a.Power) != string(vm.Power) {
			t.Errorf("VM %s after evacuation: %+v (was %s)", vm.Name, a, vm.Power)
		}
		targets[a.Host]++
	}
	if len(targets) != 3 {
		t.Errorf("VMs were not spread over the 3 other hosts: %v", targets)
	}
	var offline int
	for _, it := range op.Items {
		want := cluster.ActionLiveMigrate
		if actual[it.VM].Power != drivers.PoweredOn {
			want = cluster.ActionOfflineMigrate
			offline++
		}
		if it.Action != want || it.Attempts != 1 {
			t.Errorf("step %+v, want action %s in one attempt", it, want)
		}
	}
	if offline == 0 {
		t.Error("no stopped VM was offline-migrated under migrate all")
	}

	// From the action log: starts are largest memory first, and at most
	// per_source (2) steps were in flight at once.
	mem := map[string]int64{}
	for _, vm := range before {
		mem[vm.ID] = vm.MemoryBytes
	}
	var last int64 = 1 << 62
	inflight, peak := 0, 0
	for _, e := range opEvents(t, c, ref.Operation) {
		switch e.Type {
		case "step.started":
			if mem[e.VM] > last {
				t.Errorf("VM %s (%d MiB) started after a smaller one", e.VM, mem[e.VM]>>20)
			}
			last = mem[e.VM]
			inflight++
			peak = max(peak, inflight)
		case "step.done", "step.failed":
			inflight--
		}
	}
	if peak != 2 {
		t.Errorf("peak concurrent migrations from one host: %d, want 2 (per_source)", peak)
	}

	// The metrics say the same.
	resp, err := http.Get(dev.APIAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		fmt.Sprintf("herd_migrations_total{kind=\"live\",result=\"ok\"} %d", len(before)-offline),
		fmt.Sprintf("herd_migrations_total{kind=\"offline\",result=\"ok\"} %d", offline),
		fmt.Sprintf("herd_migration_duration_seconds_count{kind=\"live\"} %d", len(before)-offline),
		"herd_migrations_in_flight 0",
		fmt.Sprintf("herd_host_maintenance_state{host=%q,state=\"on\"} 1", src.Name),
		fmt.Sprintf("herd_host_admin_status{host=%q,status=\"MAINTENANCE\"} 1", src.Name),
		"herd_operations{kind=\"evacuate\",state=\"succeeded\"} 1",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestMigrateModesAndShutdownList(t *testing.T) {
	dev, c := startDevWith(t, 3, 16, nil, nil)
	ctx := context.Background()
	hosts, _ := c.Hosts(ctx)

	// none: the host closes at once, VMs stay.
	ref, err := c.Maintenance(ctx, hosts[0].Name, api.MaintenanceRequest{Status: "enable"})
	if err != nil {
		t.Fatal(err)
	}
	op := waitOp(t, c, ref.Operation, 10*time.Second)
	h, _ := c.Host(ctx, hosts[0].Name)
	if op.State != api.OpSucceeded || op.Total != 0 || h.Maintenance != api.MaintenanceOn || h.VMs != hosts[0].VMs {
		t.Fatalf("migrate none: op %+v host %+v", op, h)
	}

	// active-only with one running VM shut down: stopped VMs stay, the
	// listed one is shut down in place, the rest live-migrate.
	vms, _ := c.VMs(ctx, hosts[1].Name)
	var shut api.VMView
	var stopped int
	for _, vm := range vms {
		if vm.Power == api.PoweredOn && shut.ID == "" {
			shut = vm
		}
		if vm.Power != api.PoweredOn {
			stopped++
		}
	}
	ref, err = c.Maintenance(ctx, hosts[1].Name, api.MaintenanceRequest{Status: "enable", Migrate: "active-only", ShutdownVMs: []string{shut.Name}})
	if err != nil {
		t.Fatal(err)
	}
	op = waitOp(t, c, ref.Operation, 20*time.Second)
	if op.State != api.OpSucceeded {
		t.Fatalf("active-only: %+v", op)
	}
	actual := driverVMs(t, dev.Sim)
	if a := actual[shut.ID]; a.Host != hosts[1].Name || a.Power != drivers.PoweredOff {
		t.Fatalf("shut-down VM: %+v", a)
	}
	left := 0
	for _, vm := range vms {
		if actual[vm.ID].Host == hosts[1].Name {
			left++
		}
	}
	if left != stopped+1 {
		t.Fatalf("active-only left %d VMs on the host, want %d stopped + 1 shut down", left, stopped)
	}
	// Repeating the enable gives the same operation and stops nothing again.
	again, err := c.Maintenance(ctx, hosts[1].Name, api.MaintenanceRequest{Status: "enable", Migrate: "active-only", ShutdownVMs: []string{shut.Name}})
	if err != nil || again.Operation != ref.Operation {
		t.Fatalf("repeated enable: %+v %v, want %s", again, err, ref.Operation)
	}
	var se *api.StatusError
	if _, err := c.Maintenance(ctx, hosts[1].Name, api.MaintenanceRequest{Status: "enable", Migrate: "all"}); !errors.As(err, &se) || se.Code != 409 {
		t.Fatalf("enable with other settings: %v", err)
	}

	// Exit precheck lists what left, and where it is now.
	ep, err := c.ExitPrecheck(ctx, hosts[1].Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(ep.ShutdownVMs) != 1 || ep.ShutdownVMs[0].VM != shut.ID || len(ep.LiveMigratedVMs) != len(vms)-stopped-1 || len(ep.OfflineMigratedVMs) != 0 {
		t.Fatalf("exit precheck: %+v", ep)
	}
	back := ep.LiveMigratedVMs[0]
	if back.NowOn == hosts[1].Name || back.NowOn != back.MovedTo || back.PowerState != "running" {
		t.Fatalf("live-migrated VM: %+v", back)
	}
	// Disable, powering the shut-down VM on and bringing one VM back.
	ref, err = c.Maintenance(ctx, hosts[1].Name, api.MaintenanceRequest{Status: "disable", PowerOnVMs: []string{shut.Name}, LiveMigrateBackVMs: []string{back.Name}})
	if err != nil {
		t.Fatal(err)
	}
	op = waitOp(t, c, ref.Operation, 20*time.Second)
	h, _ = c.Host(ctx, hosts[1].Name)
	if op.State != api.OpSucceeded || op.Total != 2 || h.Maintenance != api.MaintenanceOff || h.Admin != api.Available {
		t.Fatalf("exit: op %+v host %+v", op, h)
	}
	actual = driverVMs(t, dev.Sim)
	if a := actual[shut.ID]; a.Power != drivers.PoweredOn || a.Host != hosts[1].Name {
		t.Errorf("powered-on VM: %+v", a)
	}
	if a := actual[back.VM]; a.Host != hosts[1].Name || a.Power != drivers.PoweredOn {
		t.Errorf("migrated-back VM: %+v", a)
	}
	others := 0
	for _, l := range ep.LiveMigratedVMs[1:] {
		if actual[l.VM].Host != hosts[1].Name {
			others++
		}
	}
	if others != len(ep.LiveMigratedVMs)-1 {
		t.Errorf("by default nothing else moves back: %d of %d stayed away", others, len(ep.LiveMigratedVMs)-1)
	}
}

func TestMigrateBackOnExitPolicy(t *testing.T) {
	dev, c := startDevWith(t, 3, 9, nil, func(p *policy.Document) { p.Maintenance.MigrateBackOnExit = true })
	ctx := context.Background()
	src := busiestHost(t, c)
	vms, _ := c.VMs(ctx, src.Name)
	ref, err := c.Maintenance(ctx, src.Name, api.MaintenanceRequest{Status: "enable", Migrate: "all"})
	if err != nil {
		t.Fatal(err)
	}
	waitOp(t, c, ref.Operation, 20*time.Second)
	ref, err = c.Maintenance(ctx, src.Name, api.MaintenanceRequest{Status: "disable"})
	if err != nil {
		t.Fatal(err)
	}
	if op := waitOp(t, c, ref.Operation, 20*time.Second); op.State != api.OpSucceeded || op.Total != len(vms) {
		t.Fatalf("exit with migrate back: %+v", op)
	}
	actual := driverVMs(t, dev.Sim)
	for _, vm := range vms {
		if a := actual[vm.ID]; a.Host != src.Name || string(a.Power) != string(vm.Power) {
			t.Errorf("VM %s not back as it was: %+v", vm.Name, a)
		}
	}
}

func TestTargetHostAndBlockers(t *testing.T) {
	dev, c := startDevWith(t, 3, 9, nil, nil)
	ctx := context.Background()
	hosts, _ := c.Hosts(ctx)
	src, dst := hosts[0].Name, hosts[1].Name

	// Everything to one host.
	ref, err := c.Maintenance(ctx, src, api.MaintenanceRequest{Status: "enable", Migrate: "all", TargetHost: dst})
	if err != nil {
		t.Fatal(err)
	}
	waitOp(t, c, ref.Operation, 20*time.Second)
	for id, vm := range driverVMs(t, dev.Sim) {
		if vm.Host == src {
			t.Errorf("VM %s still on %s", id, src)
		}
	}
	vms, _ := c.VMs(ctx, dst)
	if len(vms) != hosts[0].VMs+hosts[1].VMs {
		t.Fatalf("target host holds %d VMs, want %d", len(vms), hosts[0].VMs+hosts[1].VMs)
	}

	// A target in maintenance cannot take VMs: 409 with the blockers, and nothing changes.
	var se *api.StatusError
	_, err = c.Maintenance(ctx, hosts[2].Name, api.MaintenanceRequest{Status: "enable", Migrate: "all", TargetHost: src})
	if !errors.As(err, &se) || se.Code != 409 || len(se.Body.Blockers) == 0 || !strings.Contains(se.Body.Blockers[0].Reason, "MAINTENANCE") {
		t.Fatalf("target in maintenance: %v", err)
	}
	if h, _ := c.Host(ctx, hosts[2].Name); h.Maintenance != api.MaintenanceOff {
		t.Fatalf("refused enable changed the host: %+v", h)
	}
	// A host whose hypervisor does not answer needs recovery, not maintenance.
	if err := dev.Sim.SetHostConnection(hosts[2].Name, drivers.NotResponding); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.SyncInventory(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
	pc, err := c.Precheck(ctx, hosts[2].Name, api.MaintenanceRequest{Status: "enable", Migrate: "all"})
	if err != nil || len(pc.Blockers) == 0 || !strings.Contains(pc.Blockers[0].Reason, "not operating") {
		t.Fatalf("precheck of an unreachable host: %+v %v", pc, err)
	}
	if _, err := c.Maintenance(ctx, hosts[2].Name, api.MaintenanceRequest{Status: "enable"}); !errors.As(err, &se) || se.Code != 409 {
		t.Fatalf("enable on an unreachable host: %v", err)
	}
}

func TestCapacityBlocker(t *testing.T) {
	// Keep 80 % of every host free: one host's VMs no longer fit elsewhere.
	_, c := startDevWith(t, 2, 12, nil, func(p *policy.Document) { p.Placement.MemoryReserve = 0.8 })
	ctx := context.Background()
	src := busiestHost(t, c)
	pc, err := c.Precheck(ctx, src.Name, api.MaintenanceRequest{Status: "enable", Migrate: "active-only"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, b := range pc.Blockers {
		found = found || strings.Contains(b.Reason, "not enough capacity")
	}
	if !found {
		t.Fatalf("precheck blockers %+v lack 'not enough capacity'", pc.Blockers)
	}
	var se *api.StatusError
	if _, err := c.Maintenance(ctx, src.Name, api.MaintenanceRequest{Status: "enable", Migrate: "active-only"}); !errors.As(err, &se) || se.Code != 409 || len(se.Body.Blockers) == 0 {
		t.Fatalf("enable without capacity: %v", err)
	}
	// With the blockers listed in shutdown_vms it may go ahead.
	var names []string
	for _, b := range se.Body.Blockers {
		names = append(names, b.VM)
	}
	if _, err := c.Maintenance(ctx, src.Name, api.MaintenanceRequest{Status: "enable", Migrate: "active-only", ShutdownVMs: names}); err != nil {
		t.Fatalf("enable with the blocked VMs shut down: %v", err)
	}
}

func TestRetriesElsewhereThenErrorThenRetry(t *testing.T) {
	dev, c := startDevWith(t, 4, 8, nil, func(p *policy.Document) { p.Maintenance.RetryBackoff = time.Second })
	ctx := context.Background()
	src := busiestHost(t, c)
	vms, _ := c.VMs(ctx, src.Name)
	var victim api.VMView
	for _, vm := range vms {
		if vm.Power == api.PoweredOn {
			victim = vm
			break
		}
	}
	dev.Sim.InjectFault("RelocateVM_Task", victim.Name, "simulated vMotion failure")
	ref, err := c.Maintenance(ctx, src.Name, api.MaintenanceRequest{Status: "enable", Migrate: "active-only"})
	if err != nil {
		t.Fatal(err)
	}
	op := waitOp(t, c, ref.Operation, 30*time.Second)
	if op.State != api.OpFailed || !strings.Contains(op.Error, victim.Name) || !strings.Contains(op.Error, "simulated vMotion failure") {
		t.Fatalf("operation after a VM failed three times: %+v", *op)
	}
	it := op.Items[op.Item(victim.ID)]
	if it.State != api.ItemFailed || it.Attempts != cluster.MaxAttempts || len(it.Tried) != 3 {
		t.Fatalf("failed step: %+v", it)
	}
	if distinct(it.Tried) != 3 {
		t.Errorf("retries did not go elsewhere: tried %v", it.Tried)
	}
	h, _ := c.Host(ctx, src.Name)
	if h.Maintenance != api.MaintenanceError || h.Admin != api.InMaintenance {
		t.Fatalf("host after failure: %+v", h)
	}
	// Fixed, retried: the host reaches on without moving anything twice.
	dev.Sim.ClearFaults()
	if _, err := c.RetryOperation(ctx, ref.Operation); err != nil {
		t.Fatal(err)
	}
	op = waitOp(t, c, ref.Operation, 20*time.Second)
	if op.State != api.OpSucceeded {
		t.Fatalf("retried: %+v", op)
	}
	for _, it := range op.Items {
		if it.VM != victim.ID && it.Attempts != 1 {
			t.Errorf("VM %s moved again on retry: %d attempts", it.Name, it.Attempts)
		}
	}
	if h, _ := c.Host(ctx, src.Name); h.Maintenance != api.MaintenanceOn {
		t.Fatalf("host after retry: %+v", h)
	}
}

func distinct(s []string) int {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return len(m)
}

func TestCancelAndNoProgressDeadline(t *testing.T) {
	_, c := startDevWith(t, 3, 12, map[string]int{"RelocateVM_Task": 400}, func(p *policy.Document) {
		p.Maintenance.PerSource, p.Maintenance.NoProgressTimeout = 1, 30*time.Second
	})
	ctx := context.Background()
	hosts, _ := c.Hosts(ctx)
	ref, err := c.Maintenance(ctx, hosts[0].Name, api.MaintenanceRequest{Status: "enable", Migrate: "all"})
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "a step in flight", func() bool {
		op, _ := c.Operation(ctx, ref.Operation)
		return op != nil && op.Running == 1
	})
	if _, err := c.CancelOperation(ctx, ref.Operation); err != nil {
		t.Fatal(err)
	}
	// Cancelling again while the step in flight ends, and after, answers
	// as the first cancel did and logs nothing more.
	if again, err := c.CancelOperation(ctx, ref.Operation); err != nil || !again.Stopping {
		t.Fatalf("cancel while stopping: %+v %v", again, err)
	}
	op := waitOp(t, c, ref.Operation, 10*time.Second)
	if op.State != api.OpCancelled || op.Done != 1 || op.Cancelled != op.Total-1 {
		t.Fatalf("cancelled: in-flight should finish, nothing new start: %+v", op)
	}
	// A deliberate cancel is not an error: the host says cancelled and
	// stays closed.
	h, _ := c.Host(ctx, hosts[0].Name)
	if h.Admin != api.InMaintenance || h.Maintenance != api.MaintenanceCancelled {
		t.Fatalf("host after cancel: %+v, want maintenance cancelled and closed", h)
	}
	if again, err := c.CancelOperation(ctx, ref.Operation); err != nil || again.State != api.OpCancelled {
		t.Fatalf("cancel after the end: %+v %v", again, err)
	}
	n := 0
	for _, e := range opEvents(t, c, ref.Operation) {
		if e.Type == "operation.cancelled" {
			n++
		}
		if e.Type == "maintenance.error" {
			t.Errorf("a cancel logged as an error: %+v", e)
		}
	}
	if n != 1 {
		t.Errorf("%d operation.cancelled events, want 1", n)
	}
}

func TestNoProgressFailsLoudly(t *testing.T) {
	_, c := startDevWith(t, 2, 4, map[string]int{"RelocateVM_Task": 3000}, func(p *policy.Document) {
		p.Maintenance.NoProgressTimeout = time.Second
	})
	ctx := context.Background()
	src := busiestHost(t, c)
	ref, err := c.Maintenance(ctx, src.Name, api.MaintenanceRequest{Status: "enable", Migrate: "all"})
	if err != nil {
		t.Fatal(err)
	}
	op := waitOp(t, c, ref.Operation, 20*time.Second)
	if op.State != api.OpFailed || !strings.Contains(op.Error, "no VM finished") {
		t.Fatalf("stalled evacuation: %+v", *op)
	}
	if h, _ := c.Host(ctx, src.Name); h.Maintenance != api.MaintenanceError {
		t.Fatalf("host: %+v", h)
	}
	found := false
	for _, e := range opEvents(t, c, ref.Operation) {
		found = found || e.Type == "operation.stalled"
	}
	if !found {
		t.Error("no operation.stalled event")
	}
}

func TestVMActionsDuringMaintenance(t *testing.T) {
	dev, c := startDevWith(t, 3, 12, nil, nil)
	ctx := context.Background()
	hosts, _ := c.Hosts(ctx)
	closed, open, na := hosts[0].Name, hosts[1].Name, hosts[2].Name
	if _, err := c.Maintenance(ctx, closed, api.MaintenanceRequest{Status: "enable"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetHostStatus(ctx, na, api.StatusRequest{Status: "NOT_ACCEPTING"}); err != nil {
		t.Fatal(err)
	}
	onClosed, _ := c.VMs(ctx, closed)
	onOpen, _ := c.VMs(ctx, open)
	var running, stopped api.VMView
	for _, vm := range onClosed {
		if vm.Power == api.PoweredOn && running.ID == "" {
			running = vm
		}
		if vm.Power != api.PoweredOn && stopped.ID == "" {
			stopped = vm
		}
	}
	var se *api.StatusError
	// Nothing is placed on a host in maintenance.
	if _, err := c.MigrateVM(ctx, onOpen[0].ID, api.MigrateRequest{TargetHost: closed}); !errors.As(err, &se) || se.Code != 409 {
		t.Fatalf("migrate onto a host in maintenance: %v", err)
	}
	// Its VMs accept live migration only.
	if stopped.ID != "" {
		if _, err := c.MigrateVM(ctx, stopped.ID, api.MigrateRequest{TargetHost: open}); !errors.As(err, &se) || se.Code != 409 {
			t.Fatalf("offline migration off a host in maintenance: %v", err)
		}
	}
	ref, err := c.MigrateVM(ctx, running.ID, api.MigrateRequest{TargetHost: open})
	if err != nil {
		t.Fatalf("live migration off a host in maintenance: %v", err)
	}
	if op := waitOp(t, c, ref.Operation, 10*time.Second); op.State != api.OpSucceeded {
		t.Fatalf("live migration: %+v", op)
	}
	if driverVMs(t, dev.Sim)[running.ID].Host != open {
		t.Fatal("VM did not move")
	}
	// An operator may place a VM on a NOT_ACCEPTING host explicitly...
	ref, err = c.MigrateVM(ctx, onOpen[0].Name, api.MigrateRequest{TargetHost: na})
	if err != nil {
		t.Fatalf("explicit migration to NOT_ACCEPTING: %v", err)
	}
	waitOp(t, c, ref.Operation, 10*time.Second)
	// ...but Herd never chooses one (nor a host in maintenance).
	ref, err = c.MigrateVM(ctx, onOpen[1].ID, api.MigrateRequest{})
	if !errors.As(err, &se) || se.Code != 409 {
		t.Fatalf("automatic placement with only closed hosts left: %v %v", ref, err)
	}
	// Unknown VM and unknown target.
	if _, err := c.MigrateVM(ctx, "no-such-vm", api.MigrateRequest{}); !errors.As(err, &se) || se.Code != 404 {
		t.Fatalf("unknown VM: %v", err)
	}
	if _, err := c.MigrateVM(ctx, onOpen[1].ID, api.MigrateRequest{TargetHost: "nope"}); !errors.As(err, &se) || se.Code != 404 || se.Body.Field != "target_host" {
		t.Fatalf("unknown target: %v", err)
	}
}

func TestMaintenanceBadRequestsChangeNothing(t *testing.T) {
	dev, c := startDevWith(t, 2, 4, nil, nil)
	ctx := context.Background()
	hosts, _ := c.Hosts(ctx)
	h := hosts[0].Name
	path := "/v1/hosts/" + h + "/maintenance"
	tests := []errorCase{
		{"unknown field", "PUT", path, `{"status":"enable","migrate":"all","evacuate":true}`, 400, "evacuate"},
		{"bad status", "PUT", path, `{"status":"on"}`, 400, "status"},
		{"bad migrate", "PUT", path, `{"status":"enable","migrate":"some"}`, 400, "migrate"},
		{"disable field on enable", "PUT", path, `{"status":"enable","poweron_vms":["x"]}`, 400, "poweron_vms"},
		{"enable field on disable", "PUT", path, `{"status":"disable","migrate":"all"}`, 400, "migrate"},
		{"target is the host", "PUT", path, `{"status":"enable","migrate":"all","target_host":"` + h + `"}`, 400, "target_host"},
		{"unknown target", "PUT", path, `{"status":"enable","migrate":"all","target_host":"nope"}`, 404, "target_host"},
		{"unknown host", "PUT", "/v1/hosts/nope/maintenance", `{"status":"enable"}`, 404, "host"},
		{"disable when off", "PUT", path, `{"status":"disable"}`, 409, "status"},
		{"unknown shutdown VM", "PUT", path, `{"status":"enable","shutdown_vms":["nope"]}`, 409, "status"},
		{"precheck unknown host", "POST", "/v1/hosts/nope/maintenance/precheck", `{"migrate":"all"}`, 404, "host"},
		{"exit precheck unknown host", "GET", "/v1/hosts/nope/maintenance/exit-precheck", ``, 404, "host"},
		{"unknown operation", "GET", "/v1/operations/op-nope", ``, 404, "operation"},
		{"cancel unknown operation", "POST", "/v1/operations/op-nope/cancel", ``, 404, "operation"},
		{"bad operations filter", "GET", "/v1/operations?state=done", ``, 400, "state"},
		{"migrate unknown field", "POST", "/v1/vms/x/migrate", `{"to":"y"}`, 400, "to"},
	}
	before := dev.Node().FSM().State()
	checkErrorAnswers(t, c.Base, tests)
	checkRequestsChangedNothing(t, before, dev.Node().FSM().State())
	// The action log answers by time.
	mark := time.Now().UTC()
	time.Sleep(1100 * time.Millisecond) // RFC 3339 has whole seconds
	if _, err := c.Maintenance(ctx, h, api.MaintenanceRequest{Status: "enable"}); err != nil {
		t.Fatal(err)
	}
	ev, err := c.Events(ctx, api.EventQuery{Host: h, Since: mark.Add(time.Second)})
	if err != nil || len(ev.Events) == 0 {
		t.Fatalf("events since: %+v %v", ev, err)
	}
	for _, e := range ev.Events {
		if e.Time.Before(mark) || e.Host != h {
			t.Fatalf("event outside the filter: %+v", e)
		}
	}
	var entering *api.Event
	for i := range ev.Events {
		if ev.Events[i].Type == "maintenance.entering" {
			entering = &ev.Events[i]
			break
		}
	}
	if entering == nil || !strings.HasPrefix(entering.Actor, "api:") {
		t.Fatalf("events since the mark lack maintenance.entering by an API client: %+v", ev.Events)
	}
}

func TestConcurrentEvacuationsShareOneLedger(t *testing.T) {
	// Three hosts; usable memory per host is set to exactly what the two
	// fuller hosts hold together (plus 1 GiB). Evacuating the emptiest host
	// fits on the other two. Evacuating the fullest one as well, alone,
	// would fit on the middle host, but not once the first evacuation's
	// VMs are counted there: the second request must be refused.
	dev, c := startDevWith(t, 3, 15, map[string]int{"RelocateVM_Task": 500}, func(p *policy.Document) {
		p.Maintenance.PerSource, p.Maintenance.PerTarget = 1, 1
	})
	ctx := context.Background()
	hosts, _ := c.Hosts(ctx)
	loads := map[string]int64{}
	var order []string
	for _, h := range hosts {
		loads[h.Name] = h.MemoryUsedBytes
		order = append(order, h.Name)
	}
	sort.Slice(order, func(i, j int) bool { return loads[order[i]] < loads[order[j]] })
	a, mid, full := order[0], order[1], order[2]
	usable := loads[mid] + loads[full] + 1<<30
	doc := dev.Policy()
	tight := *doc
	tight.Placement.MemoryReserve = 1 - float64(usable)/float64(hosts[0].MemoryBytes)
	y, err := tight.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApplyPolicy(ctx, y, "test"); err != nil {
		t.Fatal(err)
	}
	t.Logf("loads %s=%dG %s=%dG %s=%dG, usable %dG", a, loads[a]>>30, mid, loads[mid]>>30, full, loads[full]>>30, usable>>30)
	if loads[a] > usable-loads[mid]+usable-loads[full] {
		t.Skip("inventory too uneven for this scenario")
	}
	pc, err := c.Precheck(ctx, full, api.MaintenanceRequest{Status: "enable", Migrate: "active-only"})
	if err != nil || len(pc.Blockers) > 0 {
		t.Fatalf("alone, the fullest host's VMs fit: %+v %v", pc.Blockers, err)
	}
	if _, err := c.Maintenance(ctx, a, api.MaintenanceRequest{Status: "enable", Migrate: "active-only"}); err != nil {
		t.Fatalf("first evacuation: %v", err)
	}
	var se *api.StatusError
	_, err = c.Maintenance(ctx, full, api.MaintenanceRequest{Status: "enable", Migrate: "active-only"})
	if !errors.As(err, &se) || se.Code != 409 || !strings.Contains(fmt.Sprint(se.Body.Blockers), "capacity") {
		t.Fatalf("second evacuation overcommitting %s: %v", mid, err)
	}
	// Never overcommitted while the first runs.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		hs, _ := c.Hosts(ctx)
		for _, h := range hs {
			if h.MemoryUsedBytes > usable {
				t.Fatalf("host %s holds %d GiB > usable %d GiB", h.Name, h.MemoryUsedBytes>>30, usable>>30)
			}
		}
		if h, _ := c.Host(ctx, a); h.Maintenance == api.MaintenanceOn {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("first evacuation did not finish")
}

// TestMoveToAHostHerdChose: an operator's move without a target records
// the host Herd chose as planned, not as the operator's target, so that a
// retry may go elsewhere (the planned host may die during the copy).
func TestMoveToAHostHerdChose(t *testing.T) {
	_, c := startDevWith(t, 3, 6, nil, nil)
	ctx := context.Background()
	vms, err := c.VMs(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var vm api.VMView
	for _, v := range vms {
		if v.Power == api.PoweredOn {
			vm = v
			break
		}
	}
	ref, err := c.MigrateVM(ctx, vm.ID, api.MigrateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	op := waitOp(t, c, ref.Operation, 20*time.Second)
	if op.State != api.OpSucceeded || op.TargetHost != "" || len(op.Items) != 1 {
		t.Fatalf("move: %s, target %q, items %+v", op.State, op.TargetHost, op.Items)
	}
	it := op.Items[0]
	if it.Planned == "" || it.Planned == vm.Host || it.Target != it.Planned {
		t.Errorf("move from %s: planned %q, went to %q", vm.Host, it.Planned, it.Target)
	}
	if !hasEvent(opEvents(t, c, op.ID), "vm.migrate_requested", "Herd chose "+it.Planned) {
		t.Error("the request's event does not say which host Herd chose")
	}
}
