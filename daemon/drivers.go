package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/drivers/libvirt"
	"github.com/herd-project/herd/drivers/vsphere"
)

// openDriver is the default DriverFactory.
func openDriver(ctx context.Context, dc config.Driver, log *slog.Logger) (drivers.Driver, error) {
	switch dc.Type {
	case "vsphere":
		return vsphere.New(ctx, vsphere.Config{URL: dc.URL, Username: dc.Username, Password: dc.Password,
			Insecure: dc.Insecure, Datacenter: dc.Datacenter}, log.With("driver", dc.Name))
	case "libvirt":
		cfg := libvirt.Config{CallTimeout: dc.CallTimeout, Bandwidth: dc.BandwidthMiBs}
		for _, h := range dc.Hosts {
			cfg.Hosts = append(cfg.Hosts, libvirt.HostConfig{Name: h.Name, URI: h.URI, Group: h.Group, PeerURI: h.PeerURI, MigrationAddress: h.MigrationAddress})
		}
		return libvirt.New(ctx, cfg, log.With("driver", dc.Name))
	default:
		return nil, fmt.Errorf("driver %s: unknown type %q", dc.Name, dc.Type)
	}
}

// driverSet opens drivers when first needed and again after Reset, so a
// hypervisor manager that is down at start does not stop the server.
type driverSet struct {
	mu      sync.Mutex
	configs map[string]config.Driver
	open    map[string]drivers.Driver
	factory DriverFactory
	log     *slog.Logger
}

func newDriverSet(cfgs []config.Driver, f DriverFactory, log *slog.Logger) *driverSet {
	ds := &driverSet{configs: map[string]config.Driver{}, open: map[string]drivers.Driver{}, factory: f, log: log}
	for _, c := range cfgs {
		ds.configs[c.Name] = c
	}
	return ds
}

// Get returns the named driver, connecting it if needed.
func (ds *driverSet) Get(ctx context.Context, name string) (drivers.Driver, error) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if d, ok := ds.open[name]; ok {
		return d, nil
	}
	cfg, ok := ds.configs[name]
	if !ok {
		return nil, fmt.Errorf("driver %q: %w", name, drivers.ErrNotFound)
	}
	d, err := ds.factory(ctx, cfg, ds.log)
	if err != nil {
		return nil, fmt.Errorf("connect driver %s: %w", name, err)
	}
	ds.open[name] = d
	return d, nil
}

// Reset drops a driver after a connection failure; the next Get reconnects.
func (ds *driverSet) Reset(name string) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if d, ok := ds.open[name]; ok {
		d.Close()
		delete(ds.open, name)
	}
}

// Close closes every open driver.
func (ds *driverSet) Close() {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	for name, d := range ds.open {
		d.Close()
		delete(ds.open, name)
	}
}
