package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

// BenchmarkInventorySync measures inventory sync against a simulator with
// 50 hosts and 1,000 VMs over its SOAP API: a first full sync (into an
// empty state) and a sync that finds nothing changed.
func BenchmarkInventorySync(b *testing.B) {
	start := time.Now()
	dev := StartTestDev(b, DevOptions{Hosts: 50, VMs: 1000, Configure: func(c *config.Server) { c.Inventory.SyncInterval = time.Hour }})
	b.Logf("simulator with 50 hosts and 1000 VMs built in %s", time.Since(start).Round(time.Millisecond))
	ctx := context.Background()
	testutil.WaitFor(b, 60*time.Second, "first sync", func() bool { return len(dev.Node().FSM().State().VMs) == 1000 })

	b.Run("full", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			st := dev.Node().FSM().State()
			wipe := &cluster.InventoryDiff{Driver: "dev", RemoveHosts: st.HostNames()}
			for id := range st.VMs {
				wipe.RemoveVMs = append(wipe.RemoveVMs, id)
			}
			if _, err := dev.Node().Apply(ctx, wipe); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			res, err := dev.SyncInventory(ctx, "dev")
			if err != nil || len(res.Diff.UpsertVMs) != 1000 {
				b.Fatalf("full sync: %v", err)
			}
		}
	})
	b.Run("no-change", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			res, err := dev.SyncInventory(ctx, "dev")
			if err != nil || !res.Diff.Empty() {
				b.Fatalf("no-change sync wrote %v", err)
			}
		}
	})
}

// instantDriver moves VMs in memory at once: with it, an evacuation's time
// is Herd's own control-plane cost (raft writes, planning, bookkeeping).
type instantDriver struct {
	mu  sync.Mutex
	inv drivers.Inventory
}

func newInstantDriver(hosts, vmsOnFirst, vmsElsewhere int) *instantDriver {
	d := &instantDriver{}
	for i := 0; i < hosts; i++ {
		d.inv.Hosts = append(d.inv.Hosts, drivers.Host{Name: fmt.Sprintf("h%03d", i), Group: "c", MemoryBytes: 4 << 40, CPUs: 128, Connection: drivers.Connected})
	}
	add := func(i int, host string) {
		d.inv.VMs = append(d.inv.VMs, drivers.VM{ID: fmt.Sprintf("vm-%05d", i), Name: fmt.Sprintf("vm-%05d", i), Host: host,
			MemoryBytes: int64(1+i%16) << 30, VCPUs: 2, Power: drivers.PoweredOn})
	}
	for i := 0; i < vmsOnFirst; i++ {
		add(i, "h000")
	}
	for i := 0; i < vmsElsewhere; i++ {
		add(vmsOnFirst+i, fmt.Sprintf("h%03d", 1+i%(hosts-1)))
	}
	return d
}

func (d *instantDriver) Inventory(context.Context) (*drivers.Inventory, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	inv := drivers.Inventory{Hosts: append([]drivers.Host(nil), d.inv.Hosts...), VMs: append([]drivers.VM(nil), d.inv.VMs...)}
	return &inv, nil
}

func (d *instantDriver) set(id string, f func(*drivers.VM)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.inv.VMs {
		if d.inv.VMs[i].ID == id {
			f(&d.inv.VMs[i])
			return nil
		}
	}
	return fmt.Errorf("VM %s: %w", id, drivers.ErrNotFound)
}

func (d *instantDriver) Migrate(_ context.Context, id, target string, _ drivers.MigrationKind) error {
	return d.set(id, func(vm *drivers.VM) { vm.Host = target })
}
func (d *instantDriver) PowerOn(_ context.Context, id string) error {
	return d.set(id, func(vm *drivers.VM) { vm.Power = drivers.PoweredOn })
}
func (d *instantDriver) PowerOff(_ context.Context, id string) error {
	return d.set(id, func(vm *drivers.VM) { vm.Power = drivers.PoweredOff })
}
func (d *instantDriver) Shutdown(ctx context.Context, id string) error { return d.PowerOff(ctx, id) }
func (d *instantDriver) Recreate(context.Context, []byte, string) (string, error) {
	return "", drivers.ErrNotSupported
}
func (d *instantDriver) Destroy(context.Context, string, string) error {
	return drivers.ErrNotSupported
}
func (d *instantDriver) ProbeHost(context.Context, string) (drivers.Connection, error) {
	return drivers.Connected, nil
}
func (d *instantDriver) Close() error { return nil }

// BenchmarkEvacuationOverhead evacuates a host of 200 VMs whose migrations
// take no time, and reports the wall time per migration: the cost of the
// two raft writes, planning and bookkeeping around each move.
func BenchmarkEvacuationOverhead(b *testing.B) {
	for _, limits := range []struct{ perSource, cluster int }{{2, 8}, {8, 8}} {
		b.Run(fmt.Sprintf("per_source=%d", limits.perSource), func(b *testing.B) {
			var total time.Duration
			moved := 0
			for i := 0; i < b.N; i++ {
				total += evacuateInstant(b, 200, limits.perSource, limits.cluster)
				moved += 200
			}
			b.ReportMetric(float64(total.Microseconds())/float64(moved)/1000, "ms/migration")
		})
	}
}

func evacuateInstant(b *testing.B, vms, perSource, clusterLimit int) time.Duration {
	b.StopTimer()
	s := startInstantServer(b, newInstantDriver(20, vms, 2000), vms+2000, perSource, clusterLimit, nil)
	defer s.Shutdown(context.Background())
	return timeEvacuation(b, s)
}

// timeEvacuation evacuates h000 with the benchmark's timer running, and
// fails unless the evacuation succeeds.
func timeEvacuation(b *testing.B, s *Server) time.Duration {
	c, _ := api.NewClient(s.APIAddr(), "")
	b.StartTimer()
	defer b.StopTimer()
	start := time.Now()
	ref, err := c.Maintenance(context.Background(), "h000", api.MaintenanceRequest{Status: "enable", Migrate: "all"})
	if err != nil {
		b.Fatal(err)
	}
	for {
		op := s.Node().FSM().State().Operations[ref.Operation]
		if op.State.Terminal() {
			if op.State != cluster.OpSucceeded {
				b.Fatalf("evacuation %s: %s", op.State, op.Error)
			}
			return time.Since(start)
		}
		time.Sleep(time.Millisecond)
	}
}

// startInstantServer starts a dev server over drv, holding vms VMs, with
// the maintenance limits given and raft's log store wrapped by logs when
// not nil. The caller shuts it down.
func startInstantServer(b *testing.B, drv *instantDriver, vms, perSource, clusterLimit int, logs func(raft.LogStore) raft.LogStore) *Server {
	cfg := config.DefaultServer()
	cfg.NodeName, cfg.DataDir = "bench", b.TempDir()
	cfg.API.Listen, cfg.Raft.Listen, cfg.Raft.BootstrapExpect = "127.0.0.1:0", "127.0.0.1:0", 1
	cfg.Dev = true
	cfg.Inventory.SyncInterval = time.Hour
	cfg.PolicyFile = cfg.DataDir + "/policy.yaml"
	if err := writeDevPolicy(cfg.PolicyFile, func(p *policy.Document) {
		p.Maintenance.PerSource, p.Maintenance.PerTarget, p.Maintenance.Cluster = perSource, perSource, clusterLimit
	}); err != nil {
		b.Fatal(err)
	}
	cfg.Drivers = []config.Driver{{Name: "mem", Type: "vsphere", URL: "http://127.0.0.1:1/sdk"}}
	opts := Options{Logger: slog.New(slog.DiscardHandler), RaftHeartbeat: 200 * time.Millisecond, RaftElection: 200 * time.Millisecond, RaftLease: 100 * time.Millisecond,
		DriverFactory: func(context.Context, config.Driver, *slog.Logger) (drivers.Driver, error) { return drv, nil },
		RaftLogStore:  logs}
	s, err := NewServer(cfg, opts)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	testutil.WaitFor(b, 20*time.Second, "inventory", func() bool { return len(s.Node().FSM().State().VMs) == vms })
	return s
}
