package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

// fastRecovery is a policy for recovery tests: crashes seen in seconds.
func fastRecovery(p *policy.Document) {
	p.Health = policy.HealthPolicy{SuspectAfter: 500 * time.Millisecond, DeadAfter: 1500 * time.Millisecond, AliveAfter: time.Second}
	p.Recovery.RetryBackoff, p.Recovery.MaxBackoff = 200*time.Millisecond, time.Second
}

// baseName strips the -rN suffix a recreated VM gets when its name is taken.
func baseName(name string) string {
	if i := strings.LastIndex(name, "-r"); i > 0 && strings.Trim(name[i+2:], "0123456789") == "" && len(name) > i+2 {
		return name[:i]
	}
	return name
}

// hostEvents returns a host's events.
func hostEvents(t *testing.T, c *api.Client, host string) []api.Event {
	t.Helper()
	return queryEvents(t, c, api.EventQuery{Host: host})
}

func hasEvent(evs []api.Event, typ, substr string) bool {
	for _, e := range evs {
		if e.Type == typ && strings.Contains(e.Message, substr) {
			return true
		}
	}
	return false
}

// recoveryOf returns the newest recovery operation of host, or nil.
func recoveryOf(t testing.TB, c *api.Client, host string) *api.Operation {
	t.Helper()
	ops, err := c.Operations(context.Background(), host)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ops {
		if ops[i].Kind == api.OpRecover {
			return &ops[i]
		}
	}
	return nil
}

// waitRecovery waits for host's recovery to end, and wants it succeeded.
func waitRecovery(t *testing.T, c *api.Client, host string) *api.Operation {
	t.Helper()
	var op *api.Operation
	testutil.WaitFor(t, 30*time.Second, "recovery of "+host+" to end", func() bool {
		op = recoveryOf(t, c, host)
		return op != nil && op.State.Terminal()
	})
	if op.State != api.OpSucceeded {
		t.Fatalf("recovery %s: %s", op.State, op.Error)
	}
	return op
}

// powerOff stops a VM through the vSphere API, as an operator would.
func powerOff(t *testing.T, sim *vsphere.Simulator, id string) {
	t.Helper()
	d, err := vsphere.New(context.Background(), sim.Config(), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.PowerOff(context.Background(), id); err != nil {
		t.Fatal(err)
	}
}

// setSimAutostart puts VM id in its host's automatic startup, through the
// vSphere API as an operator would.
func setSimAutostart(t *testing.T, sim *vsphere.Simulator, id string) {
	t.Helper()
	d, err := vsphere.New(context.Background(), sim.Config(), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.SetAutostart(context.Background(), id, true); err != nil {
		t.Fatal(err)
	}
}

// running counts, per original VM name, the running copies on hosts other
// than except.
func running(vms map[string]drivers.VM, except string) map[string]int {
	out := map[string]int{}
	for _, v := range vms {
		if v.Host != except && v.Power == drivers.PoweredOn {
			out[baseName(v.Name)]++
		}
	}
	return out
}

// TestCrashRecoveryInDevMode: a dev host crashes; it goes suspect, dead,
// fenced (the simulator's power switch), and every VM it ran runs
// elsewhere exactly once, highest priority first; a VM that was shut off is
// registered elsewhere, not started. When the host comes back it is
// NOT_ACCEPTING, its stale copies are destroyed, and then it can be opened.
func TestCrashRecoveryInDevMode(t *testing.T) {
	ctx := context.Background()
	var dev *DevServer
	var c *api.Client
	// Priorities are given by name after the inventory is known: a first
	// server finds which VMs land on the busiest host.
	dev, c = startDevWith(t, 3, 12, nil, fastRecovery)
	victim := busiestHost(t, c)
	vms, _ := c.VMs(ctx, victim.Name)
	if len(vms) < 3 {
		t.Fatalf("busiest host %s has %d VMs", victim.Name, len(vms))
	}
	var stopped string
	for _, v := range vms {
		if v.Power != api.PoweredOn {
			stopped = v.Name
		}
	}
	if stopped == "" {
		powerOff(t, dev.Sim, vms[0].ID)
		stopped = vms[0].Name
		testutil.WaitFor(t, 10*time.Second, "power-off synced", func() bool {
			vs, _ := c.VMs(ctx, victim.Name)
			for _, v := range vs {
				if v.Name == stopped {
					return v.Power == api.PoweredOff
				}
			}
			return false
		})
	}
	// The last running VM by name gets the highest priority, the next one
	// a middle one: name order and priority order differ.
	var byName []string
	for _, v := range vms {
		if v.Name != stopped {
			byName = append(byName, v.Name)
		}
	}
	slices.Sort(byName)
	high, mid := byName[len(byName)-1], byName[len(byName)-2]
	doc := dev.Policy()
	y, _ := doc.YAML()
	pol := string(y) + ""
	pol = strings.Replace(pol, "vm_groups: []", fmt.Sprintf("vm_groups:\n  - name: critical\n    vms: [%s]\n    priority: 100\n  - name: important\n    vms: [%s]\n    priority: 50", high, mid), 1)
	if _, err := c.ApplyPolicy(ctx, []byte(pol), "test"); err != nil {
		t.Fatal(err)
	}
	before := driverVMs(t, dev.Sim)
	want := running(before, "")
	ids := map[string]string{} // name → id of the victim's VMs
	for _, v := range vms {
		ids[v.Name] = v.ID
	}

	// Autostart of a VM Herd recovers is turned off while its host runs:
	// the host, booting after a fence, must not start a copy that runs
	// elsewhere (as vSphere HA does with automatic startup).
	setSimAutostart(t, dev.Sim, ids[mid])
	testutil.WaitFor(t, 10*time.Second, "autostart of "+mid+" off, with an event", func() bool {
		return !slices.Contains(dev.Sim.AutostartVMs(victim.Name), mid) &&
			hasEvent(queryEvents(t, c, api.EventQuery{VM: ids[mid]}), "vm.autostart_disabled", mid)
	})

	if err := c.DevHost(ctx, victim.Name, true); err != nil {
		t.Fatal(err)
	}
	// Set once the host is lost, it is removed when the VM is recreated.
	setSimAutostart(t, dev.Sim, ids[high])
	op := waitRecovery(t, c, victim.Name)
	if left := dev.Sim.AutostartVMs(victim.Name); len(left) != 0 {
		t.Errorf("the fenced host would start %v when it boots", left)
	}
	evs := hostEvents(t, c, victim.Name)
	var healthSeq []string
	for _, e := range evs {
		if e.Type == "host.health" {
			healthSeq = append(healthSeq, strings.Fields(e.Message)[3])
		}
	}
	if i := slices.Index(healthSeq, "suspect"); i < 0 || slices.Index(healthSeq[i:], "dead") < 0 {
		t.Errorf("health went %v: want suspect, then dead", healthSeq)
	}
	if !hasEvent(evs, "host.fenced", "fenced by simulator (dev)") {
		t.Errorf("no fencing event in %v", evs)
	}
	h, _ := c.Host(ctx, victim.Name)
	if h.Health != api.HealthFenced || h.Admin != api.Offline || h.FencedBy != policy.FenceDev {
		t.Errorf("victim after recovery: health %s admin %s fenced by %q", h.Health, h.Admin, h.FencedBy)
	}

	// Each VM is listed once, under its id, where it runs now: what the
	// fenced host holds of them are stale copies, listed with the host.
	listed, err := c.VMs(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, v := range listed {
		seen[v.Name]++
		if id, ok := ids[v.Name]; ok && (v.ID != id || v.Host == victim.Name) {
			t.Errorf("VM %s is listed as %s on %s; want its id %s, on another host", v.Name, v.ID, v.Host, id)
		}
	}
	for name, n := range seen {
		if n != 1 {
			t.Errorf("VM %s listed %d times", name, n)
		}
	}
	if len(listed) != 12 {
		t.Errorf("%d VMs listed, want 12", len(listed))
	}
	h, _ = c.Host(ctx, victim.Name)
	if h.VMs != 0 || h.StaleCopies != len(vms) || len(h.Stale) != len(vms) {
		t.Errorf("fenced host: %d VMs, %d stale copies (%+v); want 0 and %d", h.VMs, h.StaleCopies, h.Stale, len(vms))
	}
	for _, sc := range h.Stale {
		if sc.VM != ids[sc.Name] || sc.Power != "unknown" || sc.VMHost == "" || sc.VMHost == victim.Name {
			t.Errorf("stale copy %+v", sc)
		}
	}
	// A VM never goes where a stale copy of it waits for destruction.
	_, err = c.MigrateVM(ctx, ids[high], api.MigrateRequest{TargetHost: victim.Name})
	var se *api.StatusError
	if !errors.As(err, &se) || se.Code != 409 || !strings.Contains(err.Error(), "still holds a stale copy of VM "+high) {
		t.Errorf("migrate %s to the host of its stale copy: %v, want 409", high, err)
	}
	testutil.WaitFor(t, 5*time.Second, "stale copies metric", func() bool {
		return containsLine(metricsText(t, dev.Server), fmt.Sprintf(`herd_host_stale_copies{host=%q} %d`, victim.Name, len(vms)))
	})
	// One story per VM: its host was fenced, it was recreated elsewhere,
	// under the same id.
	story := queryEvents(t, c, api.EventQuery{VM: ids[high]})
	var types []string
	for _, e := range story {
		types = append(types, e.Type)
	}
	for _, want := range []string{"inventory.vm_added", "vm.host_fenced", "step.started", "step.done"} {
		if !slices.Contains(types, want) {
			t.Errorf("events of VM %s (%s): %v, want %s among them", high, ids[high], types, want)
		}
	}

	// Every VM that ran runs exactly once, none on the crashed host.
	after := driverVMs(t, dev.Sim)
	got := running(after, victim.Name)
	for name := range want {
		if got[name] != 1 {
			t.Errorf("VM %s runs %d times on live hosts, want 1", name, got[name])
		}
	}
	for _, v := range after {
		if v.Host == victim.Name && v.Power == drivers.PoweredOn {
			t.Errorf("VM %s still runs on the fenced host", v.Name)
		}
		if baseName(v.Name) == stopped && v.Host != victim.Name && v.Power != drivers.PoweredOff {
			t.Errorf("shut-off VM %s was started on %s; it must only be registered", v.Name, v.Host)
		}
	}
	registered := false
	for _, v := range after {
		registered = registered || (baseName(v.Name) == stopped && v.Host != victim.Name)
	}
	if !registered {
		t.Errorf("shut-off VM %s was not registered elsewhere", stopped)
	}
	// Highest priority first: the order in which steps started.
	var order []string
	for _, e := range opEvents(t, c, op.ID) {
		if e.Type == "step.started" {
			order = append(order, strings.Fields(e.Message)[2])
		}
	}
	if len(order) < 3 || order[0] != high || order[1] != mid {
		t.Errorf("recreation order %v: want %s, then %s first", order, high, mid)
	}
	if order[len(order)-1] != stopped {
		t.Errorf("recreation order %v: the shut-off VM %s comes after the running ones", order, stopped)
	}

	for _, line := range []string{
		`herd_fencing_attempts_total{host="` + victim.Name + `",method="dev",result="success"} 1`,
		`herd_recoveries_total{result="succeeded"} 1`,
		`herd_recovery_duration_seconds_count 1`,
	} {
		testutil.WaitFor(t, 5*time.Second, "metric "+line, func() bool { return containsLine(metricsText(t, dev.Server), line) })
	}

	// The host comes back: NOT_ACCEPTING, stale copies destroyed, then it
	// can be opened.
	if err := c.DevHost(ctx, victim.Name, false); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "host back and cleaned", func() bool {
		h, _ := c.Host(ctx, victim.Name)
		vs, _ := c.VMs(ctx, victim.Name)
		return h != nil && h.Health == api.HealthAlive && len(vs) == 0 && h.StaleCopies == 0
	})
	testutil.WaitFor(t, 5*time.Second, "VM "+high+"'s story to tell its stale copy was destroyed", func() bool {
		return hasEvent(queryEvents(t, c, api.EventQuery{VM: ids[high]}), "vm.stale_destroyed", victim.Name)
	})
	h, _ = c.Host(ctx, victim.Name)
	if h.Admin != api.NotAccepting {
		t.Errorf("returned host is %s, want NOT_ACCEPTING", h.Admin)
	}
	for _, v := range driverVMs(t, dev.Sim) {
		if v.Host == victim.Name {
			t.Errorf("stale copy %s (%s) left on the returned host", v.Name, v.ID)
		}
	}
	if _, err := c.SetHostStatus(ctx, victim.Name, api.StatusRequest{Status: "AVAILABLE"}); err != nil {
		t.Errorf("open the cleaned host: %v", err)
	}
}

// fenceScript writes a fence agent for tests: it records every request
// (secrets masked) and powers a pretend host off, unless told to fail.
func fenceScript(t *testing.T, fail bool) (path, log string) {
	t.Helper()
	dir := t.TempDir()
	path, log = filepath.Join(dir, "fence_test"), filepath.Join(dir, "requests.log")
	state := filepath.Join(dir, "power")
	code := "0"
	if fail {
		code = "1"
	}
	script := fmt.Sprintf(`#!/bin/sh
action=""; req=""
while IFS= read -r line; do
  case "$line" in
    action=*) action="${line#action=}";;
    password=*) req="$req password=(set)"; continue;;
  esac
  req="$req $line"
done
echo "$req" >> %[1]q
[ %[3]s = 0 ] || { echo "BMC unreachable" >&2; exit 1; }
case "$action" in
  off) echo off > %[2]q; exit 0;;
  on) echo on > %[2]q; exit 0;;
  status) [ "$(cat %[2]q 2>/dev/null)" = off ] && exit 2; exit 0;;
esac
exit 1
`, log, state, code)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, log
}

// TestFencingFailsThenOperatorConfirms: when the power fence cannot
// confirm, nothing is recreated — the host stays dead, an event and a
// metric say why; an operator's confirmation then recovers it.
func TestFencingFailsThenOperatorConfirms(t *testing.T) {
	needProgram(t, "sh", "dash")
	agent, reqLog := fenceScript(t, true)
	secret := filepath.Join(t.TempDir(), "ipmi.pass")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dev, c := startDevWith(t, 3, 9, nil, func(p *policy.Document) {
		fastRecovery(p)
		p.Recovery.Fencing = []policy.FenceMethod{{Name: "ipmi", Type: policy.FencePower, Agent: agent,
			Params: map[string]string{"ip": "{host}-bmc", "username": "admin"}, SecretFiles: map[string]string{"password": secret},
			Timeout: 5 * time.Second, ConfirmTimeout: time.Second}}
	})
	ctx := context.Background()
	victim := busiestHost(t, c)
	before := len(driverVMs(t, dev.Sim))
	if err := c.DevHost(ctx, victim.Name, true); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "fencing to fail", func() bool {
		h, _ := c.Host(ctx, victim.Name)
		return h != nil && h.FenceFailure != ""
	})
	h, _ := c.Host(ctx, victim.Name)
	if h.Health != api.HealthDead || !strings.Contains(h.FenceFailure, "ipmi (power)") {
		t.Errorf("after failed fencing: health %s, failure %q", h.Health, h.FenceFailure)
	}
	if !strings.HasPrefix(h.NotFenced, "fencing failed: ipmi (power)") {
		t.Errorf("host says it is not fenced because %q, want the failure", h.NotFenced)
	}
	if !hasEvent(hostEvents(t, c, victim.Name), "host.fencing_failed", "Nothing is recreated") {
		t.Error("no fencing_failed event")
	}
	m := metricsText(t, dev.Server)
	for _, line := range []string{
		`herd_host_fencing_failed{host="` + victim.Name + `"} 1`,
		`herd_fencing_attempts_total{host="` + victim.Name + `",method="power",result="failure"} 1`,
	} {
		if !containsLine(m, line) {
			t.Errorf("metrics lack %s:\n%s", line, grepLines(m, "fenc"))
		}
	}
	reqs, _ := os.ReadFile(reqLog)
	if !strings.Contains(string(reqs), "ip="+victim.Name+"-bmc") || !strings.Contains(string(reqs), "password=(set)") || !strings.Contains(string(reqs), "action=off") {
		t.Errorf("fence agent requests: %q", reqs)
	}
	// Nothing is recreated while it is not fenced.
	time.Sleep(2 * time.Second)
	if op := recoveryOf(t, c, victim.Name); op != nil {
		t.Fatalf("recovery %s started without fencing", op.ID)
	}
	if n := len(driverVMs(t, dev.Sim)); n != before {
		t.Fatalf("%d VMs exist, %d before: something was recreated without fencing", n, before)
	}

	// The operator's word: the host is off.
	if _, err := c.SetHostStatus(ctx, victim.Name, api.StatusRequest{Status: "OFFLINE", Reason: "pulled the plug", ConfirmFenced: true}); err != nil {
		t.Fatal(err)
	}
	op := waitRecovery(t, c, victim.Name)
	h, _ = c.Host(ctx, victim.Name)
	if h.FencedBy != cluster.FenceOperator || h.FenceFailure != "" {
		t.Errorf("fenced by %q, failure %q", h.FencedBy, h.FenceFailure)
	}
	for _, it := range op.Items {
		if it.State != api.ItemDone || it.NewID == "" {
			t.Errorf("step %s: %s, new copy %q", it.Name, it.State, it.NewID)
		}
	}
}

// TestPowerFencingConfirms: a fence agent that powers the host off and
// confirms it with status fences the host, and recovery follows.
func TestPowerFencingConfirms(t *testing.T) {
	needProgram(t, "sh", "dash")
	agent, reqLog := fenceScript(t, false)
	_, c := startDevWith(t, 2, 4, nil, func(p *policy.Document) {
		fastRecovery(p)
		p.Recovery.Fencing = []policy.FenceMethod{{Name: "bmc", Type: policy.FencePower, Agent: agent,
			HostParams: map[string]map[string]string{"DC0_C0_H0": {"ip": "10.0.0.10"}}, Timeout: 5 * time.Second, ConfirmTimeout: 2 * time.Second}}
	})
	ctx := context.Background()
	victim := busiestHost(t, c)
	if err := c.DevHost(ctx, victim.Name, true); err != nil {
		t.Fatal(err)
	}
	waitRecovery(t, c, victim.Name)
	reqs, _ := os.ReadFile(reqLog)
	lines := strings.Split(strings.TrimSpace(string(reqs)), "\n")
	if len(lines) < 2 || !strings.Contains(lines[0], "action=off") || !strings.Contains(lines[len(lines)-1], "action=status") {
		t.Errorf("fence agent was asked %q: want off, then status", lines)
	}
	if h, _ := c.Host(ctx, victim.Name); h.FencedBy != policy.FencePower {
		t.Errorf("fenced by %q", h.FencedBy)
	}
}

// TestFencingStormGuard: when more than half of the hosts look dead at
// once, nothing is fenced automatically and the guard says so.
func TestFencingStormGuard(t *testing.T) {
	dev, c := startDevWith(t, 3, 6, nil, fastRecovery)
	ctx := context.Background()
	names := dev.Sim.HostNames()
	// The second host fails 300 ms after the first: the first is dead
	// (1.5 s) while the second is only suspect (0.5 s), and a dev fence
	// confirms at once. The guard holds the first host's fencing until the
	// second is dead too.
	for i, h := range names[:2] {
		if i > 0 {
			time.Sleep(300 * time.Millisecond)
		}
		if err := c.DevHost(ctx, h, true); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 20*time.Second, "storm guard", func() bool {
		return containsLine(metricsText(t, dev.Server), "herd_recovery_storm 1")
	})
	time.Sleep(2 * time.Second)
	for _, h := range names[:2] {
		host, _ := c.Host(ctx, h)
		if host.Health != api.HealthDead {
			t.Errorf("host %s is %s, want dead and not fenced", h, host.Health)
		}
		if recoveryOf(t, c, h) != nil {
			t.Errorf("host %s recovered during a storm", h)
		}
		if !strings.HasPrefix(host.NotFenced, "storm guard: 2 of 3 hosts look dead") {
			t.Errorf("host %s says it is not fenced because %q, want the storm guard", h, host.NotFenced)
		}
	}
	// host ls says it in a column of its own.
	hosts, err := c.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if want := slices.Contains(names[:2], h.Name); want != (h.NotFenced != "") {
			t.Errorf("host %s (%s): not fenced because %q", h.Name, h.Health, h.NotFenced)
		}
	}
	ev, _ := c.Events(ctx, api.EventQuery{})
	if !hasEvent(ev.Events, "recovery.storm", "nothing is fenced automatically") {
		t.Error("no storm event")
	}
}

// TestFlappingHostIsNotRecovered: losses shorter than dead_after, again and
// again, never fence or recover a host.
func TestFlappingHostIsNotRecovered(t *testing.T) {
	dev, c := startDevWith(t, 2, 4, nil, func(p *policy.Document) {
		fastRecovery(p)
		p.Health.DeadAfter = 3 * time.Second
	})
	ctx := context.Background()
	host := dev.Sim.HostNames()[0]
	for i := 0; i < 5; i++ {
		if err := c.DevHost(ctx, host, true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		if err := c.DevHost(ctx, host, false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(700 * time.Millisecond)
	}
	time.Sleep(time.Second)
	for _, e := range hostEvents(t, c, host) {
		if e.Type == "host.fenced" || e.Type == "host.fencing_failed" || (e.Type == "host.health" && strings.Contains(e.Message, " is dead ")) {
			t.Errorf("flapping host: %s: %s", e.Type, e.Message)
		}
	}
	if op := recoveryOf(t, c, host); op != nil {
		t.Errorf("flapping host recovered by %s", op.ID)
	}
}

// TestRecoveryWithoutRoomKeepsTrying: when no host can take a VM, the
// recovery does not give up: it says so and retries with backoff until
// room appears.
func TestRecoveryWithoutRoomKeepsTrying(t *testing.T) {
	dev, c := startDevWith(t, 2, 4, nil, func(p *policy.Document) {
		fastRecovery(p)
		p.Placement.MemoryReserve = 0.999
	})
	ctx := context.Background()
	victim := busiestHost(t, c)
	if err := c.DevHost(ctx, victim.Name, true); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "recovery blocked", func() bool {
		return strings.Contains(metricsText(t, dev.Server), "herd_recovery_vms{state=\"blocked\"} ") &&
			!containsLine(metricsText(t, dev.Server), `herd_recovery_vms{state="blocked"} 0`)
	})
	op := recoveryOf(t, c, victim.Name)
	time.Sleep(1500 * time.Millisecond)
	op, _ = c.Operation(ctx, op.ID)
	if op.State != api.OpRunning {
		t.Fatalf("recovery without room is %s; it must keep trying", op.State)
	}
	attempts := 0
	for _, it := range op.Items {
		attempts = max(attempts, it.Attempts)
	}
	if attempts < 2 {
		t.Errorf("at most %d attempts after seconds of backoff", attempts)
	}
	if !hasEvent(opEvents(t, c, op.ID), "recovery.blocked", "recovery never gives up") {
		t.Error("no recovery.blocked event")
	}
	// Room appears: the recovery finishes.
	doc := *dev.Policy()
	doc.Placement.MemoryReserve = 0
	y, _ := doc.YAML()
	if _, err := c.ApplyPolicy(ctx, y, "test"); err != nil {
		t.Fatal(err)
	}
	if op = waitOp(t, c, op.ID, 30*time.Second); op.State != api.OpSucceeded {
		t.Fatalf("recovery %s: %s", op.State, op.Error)
	}
}

// TestRecreatedCopyThatWouldNotStart: a recreated copy that does not start
// (the hypervisor refuses, or the call times out) is kept, and the next
// attempt starts that copy: never a second one.
func TestRecreatedCopyThatWouldNotStart(t *testing.T) {
	dev, c := startDevWith(t, 2, 4, nil, fastRecovery)
	ctx := context.Background()
	victim := busiestHost(t, c)
	vms, _ := c.VMs(ctx, victim.Name)
	var name string
	for _, v := range vms {
		if v.Power == api.PoweredOn {
			name = v.Name
		}
	}
	dev.Sim.InjectFault("PowerOnVM_Task", name, "host is busy")
	if err := c.DevHost(ctx, victim.Name, true); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the start refused", func() bool {
		op := recoveryOf(t, c, victim.Name)
		return op != nil && hasEvent(opEvents(t, c, op.ID), "recovery.blocked", "host is busy")
	})
	time.Sleep(time.Second) // more attempts while it is refused
	dev.Sim.ClearFaults()
	op := waitRecovery(t, c, victim.Name)
	copies := 0
	for _, v := range driverVMs(t, dev.Sim) {
		if baseName(v.Name) == name && v.Host != victim.Name {
			copies++
			if v.Power != drivers.PoweredOn {
				t.Errorf("copy %s on %s is %s", v.Name, v.Host, v.Power)
			}
		}
	}
	if copies != 1 {
		t.Errorf("VM %s has %d copies on live hosts after refused starts, want 1", name, copies)
	}
	for _, it := range op.Items {
		if it.Name != name {
			continue
		}
		if it.Attempts < 2 {
			t.Errorf("step %s: %d attempts; the refused start was not retried", name, it.Attempts)
		}
		// The copy the first attempt defined is the one that runs.
		if !hasEvent(opEvents(t, c, op.ID), "recovery.blocked", it.NewID) {
			t.Errorf("step %s ended with copy %s, not the one the refused attempt defined", name, it.NewID)
		}
	}
}
