package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/drivers/libvirt"
	"github.com/herd-project/herd/drivers/libvirt/libvirttest"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

// TestMaintenanceOnLibvirtHosts empties a real libvirt host of three tiny
// running VMs by real QEMU live migration, through herd's API.
func TestMaintenanceOnLibvirtHosts(t *testing.T) {
	fx := libvirttest.StartFixture(t, 3)
	hosts := fx.HostNames()
	var ids []string
	for i, name := range []string{"web-1", "web-2", "db-1"} {
		ids = append(ids, fx.DefineVM(t, hosts[0], name, 64+16*i, true))
	}
	c := startLibvirtServer(t, fx, nil)
	waitInventory(t, c, 3, 3)

	ctx := context.Background()
	ref, err := c.Maintenance(ctx, hosts[0], api.MaintenanceRequest{Status: "enable", Migrate: "active-only"})
	if err != nil {
		t.Fatal(err)
	}
	op := waitOp(t, c, ref.Operation, 90*time.Second)
	if op.State != api.OpSucceeded || op.Done != 3 {
		t.Fatalf("evacuation of a libvirt host: %+v", *op)
	}
	// libvirt itself says: nothing on the host, each VM running elsewhere.
	if left := fx.DomainStates(t, hosts[0]); len(left) != 0 {
		t.Fatalf("domains left on %s: %v", hosts[0], left)
	}
	for _, id := range ids {
		n := 0
		for _, h := range hosts[1:] {
			if st, ok := fx.DomainStates(t, h)[id]; ok {
				n++
				if st != drivers.PoweredOn {
					t.Errorf("VM %s on %s is %s", id, h, st)
				}
			}
		}
		if n != 1 {
			t.Errorf("VM %s is defined on %d hosts, want exactly 1", id, n)
		}
	}
	if h, _ := c.Host(ctx, hosts[0]); h.Maintenance != api.MaintenanceOn {
		t.Fatalf("host after evacuation: %+v", h)
	}
}

// TestEvacuationTargetLost: the target of a live migration crashes in the
// middle of the copy. The source keeps the VM, the failed step is not
// counted as an attempt (the VM was not at fault), and the evacuation —
// allowed one attempt per VM — moves it to the third host instead of
// ending in error.
func TestEvacuationTargetLost(t *testing.T) {
	fx := libvirttest.StartFixture(t, 3)
	hosts := fx.HostNames()
	id := fx.DefineDomain(t, hosts[0], libvirttest.VMSpec{Name: "slow", MemoryMiB: 96, FillMiB: 48, Running: true})
	c := startLibvirtServerWith(t, fx, func(p *policy.Document) {
		p.Maintenance.Attempts = 1
	}, func(dc *config.Driver) { dc.BandwidthMiBs = 8 })
	waitInventory(t, c, 3, 1)

	ctx := context.Background()
	ref, err := c.Maintenance(ctx, hosts[0], api.MaintenanceRequest{Status: "enable", Migrate: "active-only"})
	if err != nil {
		t.Fatal(err)
	}
	var target string
	testutil.WaitFor(t, 30*time.Second, "the migration under way", func() bool {
		op, err := c.Operation(ctx, ref.Operation)
		if err != nil || len(op.Items) == 0 {
			return false
		}
		if it := op.Items[0]; it.State == api.ItemRunning && it.Target != "" {
			target = it.Target
			return true
		}
		return false
	})
	time.Sleep(time.Second) // into the copy: 48 MiB at 8 MiB/s
	fx.Kill(t, target)

	op := waitOp(t, c, ref.Operation, 90*time.Second)
	if op.State != api.OpSucceeded {
		t.Fatalf("evacuation whose first target died: %s (%s), items %+v", op.State, op.Error, op.Items)
	}
	it := op.Items[0]
	if it.Attempts != 1 || it.TargetLosses != 1 || len(it.Tried) != 2 || it.Tried[0] != target || it.Target == target {
		t.Errorf("step %+v: want one attempt counted, one target lost (%s), then another host", it, target)
	}
	var third string
	for _, h := range hosts[1:] {
		if h != target {
			third = h
		}
	}
	if st := fx.DomainStates(t, third)[id]; st != drivers.PoweredOn {
		t.Errorf("VM on %s is %q, want running", third, st)
	}
	if left := fx.DomainStates(t, hosts[0]); len(left) != 0 {
		t.Errorf("domains left on %s: %v", hosts[0], left)
	}
	evs, err := c.Events(ctx, api.EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if !hasEvent(evs.Events, "step.failed", "not counted: the target was lost") {
		t.Error("no step.failed event saying the lost target's failure was not counted")
	}
}

// startLibvirtServer runs a single server whose driver is the fixture's
// libvirt hosts, with the dev policy changed by pol; it returns an admin
// client.
func startLibvirtServer(t *testing.T, fx *libvirttest.Fixture, pol func(*policy.Document)) *api.Client {
	t.Helper()
	return startLibvirtServerWith(t, fx, pol, nil)
}

// startLibvirtServerWith is startLibvirtServer with the driver's
// configuration changed by drv.
func startLibvirtServerWith(t *testing.T, fx *libvirttest.Fixture, pol func(*policy.Document), drv func(*config.Driver)) *api.Client {
	t.Helper()
	return startLibvirtServerOpts(t, fx, pol, drv, nil)
}

// startLibvirtServerOpts is startLibvirtServerWith with the drivers opened
// by factory (nil: as the server opens them).
func startLibvirtServerOpts(t *testing.T, fx *libvirttest.Fixture, pol func(*policy.Document), drv func(*config.Driver), factory DriverFactory) *api.Client {
	t.Helper()
	cfg := config.DefaultServer()
	cfg.NodeName, cfg.DataDir = "lv", t.TempDir()
	cfg.API.Listen, cfg.Raft.Listen, cfg.Raft.BootstrapExpect = "127.0.0.1:0", "127.0.0.1:0", 1
	cfg.Inventory.SyncInterval = time.Second
	cfg.PolicyFile = filepath.Join(cfg.DataDir, "policy.yaml")
	if err := writeDevPolicy(cfg.PolicyFile, pol); err != nil {
		t.Fatal(err)
	}
	dc := fixtureDriverConfig(fx)
	if drv != nil {
		drv(&dc)
	}
	cfg.Drivers = []config.Driver{dc}
	cfg.API.TokensFile, _ = testutil.WriteTokens(t)
	if err := cfg.Validate(nil); err != nil {
		t.Fatal(err)
	}
	opts := testOptions(t)
	opts.Logger = slog.New(slog.DiscardHandler)
	opts.DriverFactory = factory
	s, err := NewServer(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	c, _ := api.NewClient(s.APIAddr(), adminToken)
	return c
}

// fixtureDriverConfig is a libvirt driver for every host of fx.
func fixtureDriverConfig(fx *libvirttest.Fixture) config.Driver {
	dc := config.Driver{Name: "kvm", Type: "libvirt", CallTimeout: libvirttest.CallTimeout}
	for _, h := range fx.Hosts() {
		dc.Hosts = append(dc.Hosts, config.LibvirtHost{Name: h.Name, URI: h.URI, Group: h.Group, MigrationAddress: h.MigrationAddress})
	}
	return dc
}

// fixtureDriver is a fresh driver for every host of fx.
func fixtureDriver(t *testing.T, fx *libvirttest.Fixture) *libvirt.Driver {
	t.Helper()
	d, err := openDriver(context.Background(), fixtureDriverConfig(fx), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	return d.(*libvirt.Driver)
}

// libvirtVMs is what the hosts' own libvirtd report, through a fresh driver.
func libvirtVMs(t *testing.T, fx *libvirttest.Fixture) []drivers.VM {
	t.Helper()
	d := fixtureDriver(t, fx)
	defer d.Close()
	inv, err := d.Inventory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return inv.VMs
}

// TestCrashRecoveryOnLibvirtHosts: a libvirt host with two running tiny
// VMs and a shut-off one crashes (its libvirtd and QEMU processes killed);
// a fence agent that checks the host's libvirtd port confirms it is off;
// the running VMs are recreated from their stored XML on the other hosts
// and really run there (exactly once), the shut-off one is defined only.
// Each is the same machine: the same UUID, SMBIOS UUID, name and MACs as
// the original, read from both hosts' libvirtd. The host comes back:
// NOT_ACCEPTING, and its stale definitions undefined. No VM runs on two
// hosts at any moment of it.
func TestCrashRecoveryOnLibvirtHosts(t *testing.T) {
	fx := libvirttest.StartFixture(t, 3)
	hosts := fx.HostNames()
	web := fx.DefineDomain(t, hosts[0], libvirttest.VMSpec{Name: "web-1", MemoryMiB: 64, Running: true,
		Devices: "<interface type='user'><mac address='52:54:00:13:00:01'/><model type='virtio'/></interface>"})
	db := fx.DefineVM(t, hosts[0], "db-1", 80, true)
	idle := fx.DefineVM(t, hosts[0], "idle-1", 64, false)
	setAutostart(t, fx, web)
	before := map[string]libvirttest.Identity{}
	for _, id := range []string{web, db, idle} {
		before[id] = fx.IdentityOf(t, hosts[0], id)
	}
	twice := watchTwoHosts(t, fx)
	agent := portFence(t, fx, hosts[0])
	c := startLibvirtServer(t, fx, func(p *policy.Document) {
		fastRecovery(p)
		p.Recovery.Fencing = []policy.FenceMethod{{Name: "port", Type: policy.FencePower, Agent: agent, Timeout: 5 * time.Second, ConfirmTimeout: 5 * time.Second}}
	})
	waitInventory(t, c, 3, 3)
	ctx := context.Background()
	testutil.WaitFor(t, 20*time.Second, "hosts alive", func() bool {
		h, _ := c.Host(ctx, hosts[0])
		return h != nil && h.Health == api.HealthAlive
	})
	// Autostart of a VM Herd recovers is turned off: the crashed host,
	// booting, must not start a copy of a VM recreated elsewhere.
	testutil.WaitFor(t, 20*time.Second, "web-1's autostart off in libvirtd, with an event", func() bool {
		for _, v := range libvirtVMs(t, fx) {
			if v.ID == web && v.Autostart {
				return false
			}
		}
		return hasEvent(queryEvents(t, c, api.EventQuery{VM: web}), "vm.autostart_disabled", "web-1")
	})

	fx.Kill(t, hosts[0])
	var op *api.Operation
	testutil.WaitFor(t, 90*time.Second, "recovery of "+hosts[0], func() bool {
		op = recoveryOf(t, c, hosts[0])
		return op != nil && op.State.Terminal()
	})
	if op.State != api.OpSucceeded {
		t.Fatalf("recovery %s: %s", op.State, op.Error)
	}
	if h, _ := c.Host(ctx, hosts[0]); h.FencedBy != policy.FencePower {
		t.Errorf("fenced by %q", h.FencedBy)
	}
	count := map[string]int{}
	for _, v := range libvirtVMs(t, fx) {
		if v.Host == hosts[0] {
			continue
		}
		count[v.Name]++
		want := drivers.PoweredOn
		if v.Name == "idle-1" {
			want = drivers.PoweredOff
		}
		if v.Power != want {
			t.Errorf("VM %s on %s is %s, want %s", v.Name, v.Host, v.Power, want)
		}
	}
	for _, name := range []string{"web-1", "db-1", "idle-1"} {
		if count[name] != 1 {
			t.Errorf("VM %s is defined %d times on the other hosts, want exactly 1", name, count[name])
		}
	}
	// The same machines, listed once each under their ids.
	listed, err := c.VMs(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 3 {
		t.Errorf("GET /v1/vms lists %d VMs, want 3: %+v", len(listed), listed)
	}
	for _, v := range listed {
		want, ok := before[v.ID]
		if !ok || v.Host == hosts[0] {
			t.Errorf("VM %s listed as %s on %s: not its id, or on the fenced host", v.Name, v.ID, v.Host)
			continue
		}
		got := fx.IdentityOf(t, v.Host, v.ID)
		if got.UUID != want.UUID || got.SMBIOS != want.SMBIOS || got.Name != want.Name || !slices.Equal(got.MACs, want.MACs) {
			t.Errorf("VM %s on %s is %+v, was %+v on %s", v.Name, v.Host, got, want, hosts[0])
		}
	}
	if h, _ := c.Host(ctx, hosts[0]); h.StaleCopies != 3 {
		t.Errorf("the fenced host lists %d stale copies, want 3", h.StaleCopies)
	}

	// The host boots again (its domains kept, shut off): they are undefined.
	fx.Boot(t, hosts[0])
	testutil.WaitFor(t, 60*time.Second, "returned host cleaned", func() bool {
		h, _ := c.Host(ctx, hosts[0])
		return h != nil && h.Health == api.HealthAlive && h.StaleCopies == 0 && len(fx.DomainStates(t, hosts[0])) == 0
	})
	if h, _ := c.Host(ctx, hosts[0]); h.Admin != api.NotAccepting || h.StaleCopies != 0 {
		t.Errorf("returned host is %s with %d stale copies, want NOT_ACCEPTING and none", h.Admin, h.StaleCopies)
	}
	for _, v := range libvirtVMs(t, fx) {
		if want := drivers.PoweredOn; v.Name != "idle-1" && v.Power != want {
			t.Errorf("VM %s on %s is %s after the return, want %s", v.Name, v.Host, v.Power, want)
		}
	}
	if v := twice(); len(v) > 0 {
		t.Errorf("a VM ran on two hosts at once: %v", v)
	}
}

// watchTwoHosts samples, four times a second until the test ends, which
// VMs run on each host that answers (straight from the hosts' libvirtd) and
// records every VM seen running on two at once. The returned function
// stops it and says what it saw.
func watchTwoHosts(t *testing.T, fx *libvirttest.Fixture) func() []string {
	d := fixtureDriver(t, fx)
	stop, done := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var seen []string
	samples := 0
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			inv, err := d.Inventory(ctx)
			cancel()
			if err != nil {
				continue
			}
			up := map[string]bool{}
			for _, h := range inv.Hosts {
				up[h.Name] = h.Connection == drivers.Connected
			}
			where := map[string][]string{}
			for _, v := range inv.VMs {
				if up[v.Host] && v.Power == drivers.PoweredOn {
					where[v.ID] = append(where[v.ID], v.Host)
				}
			}
			mu.Lock()
			samples++
			for id, hs := range where {
				if len(hs) > 1 {
					seen = append(seen, fmt.Sprintf("%s: %s runs on %v", time.Now().Format("15:04:05.000"), id, hs))
				}
			}
			mu.Unlock()
		}
	}()
	var once sync.Once
	finish := func() []string {
		once.Do(func() {
			close(stop)
			<-done
			d.Close()
		})
		mu.Lock()
		defer mu.Unlock()
		if samples < 4 {
			t.Errorf("the two-hosts watcher took %d samples", samples)
		}
		return seen
	}
	t.Cleanup(func() { finish() })
	return finish
}

// portFence writes a fence agent for host: off does nothing (the host is
// already dead), status says off only when nothing answers on the host's
// libvirtd port.
func portFence(t *testing.T, fx *libvirttest.Fixture, host string) string {
	t.Helper()
	bash := needProgram(t, "bash", "bash")
	u, err := url.Parse(fx.URI(host))
	if err != nil {
		t.Fatal(err)
	}
	agent := filepath.Join(t.TempDir(), "fence_port")
	script := fmt.Sprintf("#!%s\naction=\nwhile IFS= read -r l; do case \"$l\" in action=*) action=${l#action=};; esac; done\n"+
		"case $action in off) exit 0;; status) (exec 3<>/dev/tcp/127.0.0.1/%s) 2>/dev/null && exit 0; exit 2;; esac\nexit 1\n", bash, u.Port())
	if err := os.WriteFile(agent, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return agent
}

// setAutostart turns VM id's autostart on through a fresh driver, and
// checks the inventory reports it.
func setAutostart(t *testing.T, fx *libvirttest.Fixture, id string) {
	t.Helper()
	d := fixtureDriver(t, fx)
	defer d.Close()
	if err := d.SetAutostart(context.Background(), id, true); err != nil {
		t.Fatal(err)
	}
	for _, v := range libvirtVMs(t, fx) {
		if v.ID == id && !v.Autostart {
			t.Fatalf("VM %s: autostart set, the inventory says off", id)
		}
	}
}

// lostReply is a libvirt driver whose first Recreate defines the VM and
// then fails, as a call whose answer a cut link or a time-out lost.
type lostReply struct {
	*libvirt.Driver
	mu   sync.Mutex
	lost bool
}

func (d *lostReply) Recreate(ctx context.Context, def []byte, host string) (string, error) {
	id, err := d.Driver.Recreate(ctx, def, host)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil || d.lost {
		return id, err
	}
	d.lost = true
	return "", drivers.WithKind(fmt.Errorf("define on %s: procedure interrupted while awaiting response", host), drivers.ErrUnreachable)
}

// TestRecreationWhoseAnswerWasLost: a recreation whose define was made but
// whose answer was lost is tried again on another host; the copy the
// first attempt left (same UUID: the same VM) is removed first, so the VM
// is defined once, and runs once.
func TestRecreationWhoseAnswerWasLost(t *testing.T) {
	fx := libvirttest.StartFixture(t, 3)
	hosts := fx.HostNames()
	id := fx.DefineVM(t, hosts[0], "lost-1", 64, true)
	agent := portFence(t, fx, hosts[0])
	factory := func(ctx context.Context, dc config.Driver, log *slog.Logger) (drivers.Driver, error) {
		d, err := openDriver(ctx, dc, log)
		if err != nil {
			return nil, err
		}
		return &lostReply{Driver: d.(*libvirt.Driver)}, nil
	}
	c := startLibvirtServerOpts(t, fx, func(p *policy.Document) {
		fastRecovery(p)
		p.Recovery.Fencing = []policy.FenceMethod{{Name: "port", Type: policy.FencePower, Agent: agent, Timeout: 5 * time.Second, ConfirmTimeout: 5 * time.Second}}
	}, nil, factory)
	waitInventory(t, c, 3, 1)
	ctx := context.Background()
	testutil.WaitFor(t, 20*time.Second, "hosts alive", func() bool {
		h, _ := c.Host(ctx, hosts[0])
		return h != nil && h.Health == api.HealthAlive
	})
	fx.Kill(t, hosts[0])
	var op *api.Operation
	testutil.WaitFor(t, 90*time.Second, "recovery of "+hosts[0], func() bool {
		op = recoveryOf(t, c, hosts[0])
		return op != nil && op.State.Terminal()
	})
	if op.State != api.OpSucceeded || op.Items[0].Attempts < 2 {
		t.Fatalf("recovery %s after %d attempts: %s", op.State, op.Items[0].Attempts, op.Error)
	}
	var where []string
	for _, v := range libvirtVMs(t, fx) {
		if v.ID == id && v.Host != hosts[0] {
			where = append(where, fmt.Sprintf("%s(%s)", v.Host, v.Power))
		}
	}
	if len(where) != 1 || !strings.HasSuffix(where[0], "(running)") {
		t.Errorf("VM lost-1 is defined on %v, want once, running", where)
	}
	if !hasEvent(queryEvents(t, c, api.EventQuery{VM: id}), "vm.leftover_destroyed", "an earlier attempt left") {
		t.Error("no event says the earlier attempt's copy was removed")
	}
}
