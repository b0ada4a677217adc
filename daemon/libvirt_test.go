package daemon

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/drivers/libvirt"
)

// TestMaintenanceOnLibvirtHosts empties a real libvirt host of three tiny
// running VMs by real QEMU live migration, through herd's API.
func TestMaintenanceOnLibvirtHosts(t *testing.T) {
	fx := libvirt.StartFixture(t, 3)
	hosts := fx.HostNames()
	var ids []string
	for i, name := range []string{"web-1", "web-2", "db-1"} {
		ids = append(ids, fx.DefineVM(t, hosts[0], name, 64+16*i, true))
	}
	lc := fx.Config()
	cfg := DefaultConfig()
	cfg.NodeName, cfg.DataDir = "lv", t.TempDir()
	cfg.API.Listen, cfg.Raft.Listen, cfg.Raft.BootstrapExpect = "127.0.0.1:0", "127.0.0.1:0", 1
	cfg.Inventory.SyncInterval = time.Second
	cfg.PolicyFile = filepath.Join(cfg.DataDir, "policy.yaml")
	if err := writeDevPolicy(cfg.PolicyFile, nil); err != nil {
		t.Fatal(err)
	}
	dc := DriverConfig{Name: "kvm", Type: "libvirt", CallTimeout: lc.CallTimeout}
	for _, h := range lc.Hosts {
		dc.Hosts = append(dc.Hosts, LibvirtHost{Name: h.Name, URI: h.URI, Group: h.Group, PeerURI: h.PeerURI, MigrationAddress: h.MigrationAddress})
	}
	cfg.Drivers = []DriverConfig{dc}
	cfg.API.TokensFile, _ = writeTokens(t)
	if err := cfg.Validate(nil); err != nil {
		t.Fatal(err)
	}
	opts := testOptions(t)
	opts.Logger = slog.New(slog.DiscardHandler)
	s, err := NewServer(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	c, _ := api.NewClient(s.APIAddr(), adminToken)
	waitInventory(t, c, 3, 3)

	ctx := context.Background()
	ref, err := c.Maintenance(ctx, hosts[0], api.MaintenanceRequest{Status: "enable", Migrate: "active-only"})
	if err != nil {
		t.Fatal(err)
	}
	op := waitOp(t, c, ref.Operation, 90*time.Second)
	if op.State != cluster.OpSucceeded || op.Done != 3 {
		t.Fatalf("evacuation of a libvirt host: %+v", op.Operation)
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
	if h, _ := c.Host(ctx, hosts[0]); h.Maintenance != cluster.MaintenanceOn {
		t.Fatalf("host after evacuation: %+v", h)
	}
}
