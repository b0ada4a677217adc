package daemon

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/gossip"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/drivers/vsphere"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// testCluster is n servers formed with bootstrap_expect over loopback,
// sharing one vSphere simulator.
type testCluster struct {
	t       *testing.T
	sim     *vsphere.Simulator
	cfgs    []*config.Server
	servers []*Server
	factory DriverFactory
}

func newTestCluster(t *testing.T, n int, sim *vsphere.Simulator) *testCluster {
	return newTestClusterWith(t, n, sim, nil, nil)
}

// newTestClusterWith gives every server the default policy changed by pol
// in its own policy file.
func newTestClusterWith(t *testing.T, n int, sim *vsphere.Simulator, factory DriverFactory, pol func(*policy.Document)) *testCluster {
	return newTestClusterEdit(t, n, sim, factory, pol, nil)
}

// newTestClusterEdit is newTestClusterWith with each server's config
// changed by edit before it starts.
func newTestClusterEdit(t *testing.T, n int, sim *vsphere.Simulator, factory DriverFactory, pol func(*policy.Document), edit func(*config.Server)) *testCluster {
	tc := &testCluster{t: t, sim: sim, factory: factory}
	apis, gossips := make([]string, n), make([]string, n)
	for i := range apis {
		apis[i], gossips[i] = testutil.FreePort(t), testutil.FreePort(t)
	}
	// Every test cluster gossips, encrypted with one keyring.
	keyring := filepath.Join(t.TempDir(), "gossip.keys")
	if err := os.WriteFile(keyring, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vc := sim.Config()
	for i := 0; i < n; i++ {
		cfg := config.DefaultServer()
		cfg.NodeName = fmt.Sprintf("s%d", i+1)
		cfg.DataDir = t.TempDir()
		cfg.API.Listen = apis[i]
		cfg.Raft.Listen = testutil.FreePort(t)
		cfg.Raft.BootstrapExpect = n
		for j, a := range apis {
			if j != i {
				cfg.Raft.Join = append(cfg.Raft.Join, a)
			}
		}
		cfg.Gossip.Listen, cfg.Gossip.KeyringFile = gossips[i], keyring
		for j, g := range gossips {
			if j != i {
				cfg.Gossip.Join = append(cfg.Gossip.Join, g)
			}
		}
		cfg.Inventory.SyncInterval = time.Second
		cfg.Drivers = []config.Driver{{Name: "vc", Type: "vsphere", URL: vc.URL, Username: vc.Username, Insecure: true, Password: vc.Password}}
		cfg.PolicyFile = filepath.Join(cfg.DataDir, "policy.yaml")
		if err := writeDevPolicy(cfg.PolicyFile, pol); err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			edit(cfg)
		}
		tc.cfgs = append(tc.cfgs, cfg)
		tc.servers = append(tc.servers, tc.start(i))
	}
	t.Cleanup(func() {
		for i := range tc.servers {
			tc.stop(i)
		}
	})
	return tc
}

func (tc *testCluster) start(i int) *Server {
	opts := testOptions(tc.t)
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.DriverFactory = tc.factory
	s, err := NewServer(tc.cfgs[i], opts)
	if err != nil {
		tc.t.Fatalf("server %d: %v", i+1, err)
	}
	if err := s.Start(); err != nil {
		tc.t.Fatal(err)
	}
	return s
}

func (tc *testCluster) stop(i int) {
	if tc.servers[i] == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tc.servers[i].Shutdown(ctx)
	tc.servers[i] = nil
}

func (tc *testCluster) leader() int {
	idx := -1
	testutil.WaitFor(tc.t, 15*time.Second, "one leader", func() bool {
		idx = -1
		for i, s := range tc.servers {
			if s != nil && s.Node().IsLeader() {
				if idx >= 0 {
					return false
				}
				idx = i
			}
		}
		return idx >= 0
	})
	return idx
}

func (tc *testCluster) client(i int) *api.Client {
	c, err := api.NewClient(tc.servers[i].APIAddr(), "")
	if err != nil {
		tc.t.Fatal(err)
	}
	return c
}

func TestThreeServersFormForwardAndFailOver(t *testing.T) {
	sim, err := vsphere.StartSimulator(vsphere.SimConfig{Hosts: 3, VMs: 6})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	tc := newTestCluster(t, 3, sim)
	leader := tc.leader()
	follower := (leader + 1) % 3
	ctx := context.Background()

	// Every server serves the inventory the leader synced.
	for i := range tc.servers {
		waitInventory(t, tc.client(i), 3, 6)
	}
	// The servers gossip with each other.
	testutil.WaitFor(t, 10*time.Second, "three alive gossip members on every server", func() bool {
		for i := range tc.servers {
			cl, err := tc.client(i).Cluster(ctx)
			if err != nil || len(cl.Gossip) != 3 {
				return false
			}
			for _, m := range cl.Gossip {
				if m.State != "alive" || m.Meta.Role != gossip.RoleServer || m.Meta.API == "" {
					return false
				}
			}
		}
		return true
	})
	if m := metricsText(t, tc.servers[leader]); !strings.Contains(m, `herd_gossip_members{state="alive"} 3`) {
		t.Errorf("gossip metric missing:\n%s", grepLines(m, "gossip"))
	}
	// Every server is registered, so any of them can forward.
	testutil.WaitFor(t, 10*time.Second, "three registered servers", func() bool {
		cl, err := tc.client(follower).Cluster(ctx)
		if err != nil || len(cl.Servers) != 3 {
			return false
		}
		for _, s := range cl.Servers {
			if s.APIAddr == "" {
				return false
			}
		}
		return true
	})

	// A write sent to a follower is forwarded; its 2xx means committed.
	host := sim.HostNames()[0]
	if _, err := tc.client(follower).SetHostStatus(ctx, host, api.StatusRequest{Status: "NOT_ACCEPTING", Reason: "via follower"}); err != nil {
		t.Fatalf("write through follower: %v", err)
	}
	committed := tc.servers[leader].Node().Raft().CommitIndex()
	for _, s := range tc.servers {
		s := s
		testutil.WaitFor(t, 5*time.Second, "write applied on "+s.cfg.NodeName, func() bool {
			return s.Node().FSM().State().Hosts[host].Admin == cluster.NotAccepting
		})
	}

	// Kill the leader: a new one is elected and keeps syncing.
	start := time.Now()
	tc.stop(leader)
	newLeader := tc.leader()
	t.Logf("new leader s%d after %s", newLeader+1, time.Since(start))
	if newLeader == leader {
		t.Fatal("dead server leads")
	}
	nl := tc.servers[newLeader]
	if nl.Node().FSM().State().Index < committed {
		t.Fatalf("new leader lost committed entries: index %d < %d", nl.Node().FSM().State().Index, committed)
	}
	if nl.Node().FSM().State().Hosts[host].Admin != cluster.NotAccepting {
		t.Fatal("committed write lost on the new leader")
	}
	// The new leader's inventory sync sees a change made in vCenter.
	d, err := vsphere.New(ctx, sim.Config(), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	inv, err := d.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var vm drivers.VM
	for _, v := range inv.VMs {
		if v.Power == drivers.PoweredOn {
			vm = v
			break
		}
	}
	if err := d.PowerOff(ctx, vm.ID); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "new leader syncs the power change", func() bool {
		v := nl.Node().FSM().State().VMs[vm.ID]
		return v != nil && v.Power == cluster.PoweredOff
	})

	// The stopped server restarts from its data dir and catches up.
	tc.servers[leader] = tc.start(leader)
	back := tc.servers[leader]
	testutil.WaitFor(t, 15*time.Second, "restarted server catches up", func() bool {
		st := back.Node().FSM().State()
		v := st.VMs[vm.ID]
		return st.Hosts[host] != nil && st.Hosts[host].Admin == cluster.NotAccepting && v != nil && v.Power == cluster.PoweredOff
	})
}

// countingDriver is the real vSphere driver, counting the targets each VM
// was sent to (across every server that drove it).
type countingDriver struct {
	drivers.Driver
	mu      *sync.Mutex
	targets map[string]map[string]int
	calls   *int // every Migrate call, when set
}

func (d countingDriver) Migrate(ctx context.Context, id, target string, kind drivers.MigrationKind) error {
	d.mu.Lock()
	if d.calls != nil {
		*d.calls++
	}
	if d.targets[id] == nil {
		d.targets[id] = map[string]int{}
	}
	d.targets[id][target]++
	d.mu.Unlock()
	return d.Driver.Migrate(ctx, id, target, kind)
}

func TestLeaderKilledMidEvacuation(t *testing.T) {
	sim, err := vsphere.StartSimulator(vsphere.SimConfig{Hosts: 3, VMs: 15, MethodDelay: map[string]int{"RelocateVM_Task": 600}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	var mu sync.Mutex
	targets := map[string]map[string]int{}
	factory := func(ctx context.Context, dc config.Driver, log *slog.Logger) (drivers.Driver, error) {
		d, err := openDriver(ctx, dc, log)
		if err != nil {
			return nil, err
		}
		return countingDriver{Driver: d, mu: &mu, targets: targets}, nil
	}
	tc := newTestClusterWith(t, 3, sim, factory, func(p *policy.Document) { p.Maintenance.PerSource = 1 })
	leader := tc.leader()
	c := tc.client((leader + 1) % 3) // a follower: the write is forwarded
	waitInventory(t, c, 3, 15)
	ctx := context.Background()
	src := sim.HostNames()[0]
	vms, _ := c.VMs(ctx, src)
	ref, err := c.Maintenance(ctx, src, api.MaintenanceRequest{Status: "enable", Migrate: "all"})
	if err != nil {
		t.Fatal(err)
	}
	// Kill the leader once some VMs moved and one is in flight.
	testutil.WaitFor(t, 20*time.Second, "evacuation half way", func() bool {
		op, err := c.Operation(ctx, ref.Operation)
		return err == nil && op.Done >= 2 && op.Running == 1
	})
	tc.stop(leader)
	start := time.Now()
	survivor := tc.client((leader + 1) % 3)
	op := waitOp(t, survivor, ref.Operation, 60*time.Second)
	t.Logf("evacuation finished %s after the leader was killed", time.Since(start).Round(time.Millisecond))
	if op.State != api.OpSucceeded || op.Done != len(vms) {
		t.Fatalf("evacuation after leader loss: %+v", *op)
	}
	h, _ := survivor.Host(ctx, src)
	if h.Maintenance != api.MaintenanceOn {
		t.Fatalf("host after evacuation: %+v", h)
	}
	if !hasEvent(opEvents(t, survivor, op.ID), "operation.resumed", "steps in flight: 1,") {
		t.Error("the new leader did not say it took the evacuation over")
	}
	actual := driverVMs(t, sim)
	mu.Lock()
	defer mu.Unlock()
	for _, vm := range vms {
		if actual[vm.ID].Host == src {
			t.Errorf("VM %s still on %s", vm.Name, src)
		}
		// No VM was sent to two places: a resumed step goes to the target
		// recorded before the leader died.
		if len(targets[vm.ID]) != 1 {
			t.Errorf("VM %s was sent to %v", vm.Name, targets[vm.ID])
		}
		it := op.Items[op.Item(vm.ID)]
		if it.Attempts != 1 || actual[vm.ID].Host != it.Target {
			t.Errorf("step of %s: %+v, VM on %s", vm.Name, it, actual[vm.ID].Host)
		}
	}
}

// TestMinorityDoesNothing: a leader left without its quorum steps down,
// stops its controllers, starts no migration and commits no write.
func TestMinorityDoesNothing(t *testing.T) {
	sim, err := vsphere.StartSimulator(vsphere.SimConfig{Hosts: 3, VMs: 9, MethodDelay: map[string]int{"RelocateVM_Task": 400}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	var mu sync.Mutex
	migrations := 0
	factory := func(ctx context.Context, dc config.Driver, log *slog.Logger) (drivers.Driver, error) {
		d, err := openDriver(ctx, dc, log)
		if err != nil {
			return nil, err
		}
		return countingDriver{Driver: d, mu: &mu, targets: map[string]map[string]int{}, calls: &migrations}, nil
	}
	tc := newTestClusterWith(t, 3, sim, factory, func(p *policy.Document) { p.Maintenance.PerSource = 1 })
	leader := tc.leader()
	c := tc.client(leader)
	waitInventory(t, c, 3, 9)
	ctx := context.Background()
	src := sim.HostNames()[0]
	ref, err := c.Maintenance(ctx, src, api.MaintenanceRequest{Status: "enable", Migrate: "all"})
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "a migration in flight", func() bool {
		op, err := c.Operation(ctx, ref.Operation)
		return err == nil && op.Running == 1
	})
	// Cut the leader off: its two followers stop.
	for i := range tc.servers {
		if i != leader {
			tc.stop(i)
		}
	}
	lone := tc.servers[leader]
	testutil.WaitFor(t, 5*time.Second, "the lone leader steps down", func() bool { return !lone.Node().IsLeader() })
	// Let the migration in flight end, then count: nothing new may start.
	time.Sleep(time.Second)
	mu.Lock()
	before := migrations
	mu.Unlock()
	time.Sleep(2 * time.Second)
	mu.Lock()
	after := migrations
	mu.Unlock()
	if after != before {
		t.Fatalf("a server without quorum started %d migrations", after-before)
	}
	var se *api.StatusError
	if _, err := c.SetHostStatus(ctx, sim.HostNames()[1], api.StatusRequest{Status: "NOT_ACCEPTING"}); !errors.As(err, &se) || se.Code != 503 {
		t.Fatalf("a write to a server without quorum: %v", err)
	}
	if h := lone.Node().FSM().State().Hosts[sim.HostNames()[1]]; h.Admin != cluster.Available {
		t.Fatalf("a write without quorum changed the state: %+v", h)
	}
}

// TestClusterFormsThroughGossip: servers that know only each other's gossip
// addresses find one another's APIs in gossip and form with bootstrap_expect.
func TestClusterFormsThroughGossip(t *testing.T) {
	sim, err := vsphere.StartSimulator(vsphere.SimConfig{Hosts: 1, VMs: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	tc := newTestClusterEdit(t, 3, sim, nil, nil, func(c *config.Server) { c.Raft.Join = nil })
	tc.leader()
	cl, err := tc.client(0).Cluster(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(cl.Servers) != 3 {
		t.Fatalf("cluster formed through gossip has %d servers: %+v", len(cl.Servers), cl.Servers)
	}
}
