// Package libvirt is Herd's driver for a set of libvirt (QEMU/KVM) hosts,
// built on go-libvirt's pure-Go RPC client. It keeps one connection per
// host's libvirtd; every call is bounded by its ctx and by
// Config.CallTimeout, and a call that overruns drops that host's connection
// (go-libvirt calls would otherwise wait forever on a cut link), which is
// then made again.
package libvirt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/herd-project/herd/drivers"
)

// HostConfig says how to reach one host's libvirtd.
type HostConfig struct {
	// Name is the host's name in the inventory; unique.
	Name string
	// URI of the host's libvirtd: qemu+tcp://host:port/system,
	// qemu+unix:///system?socket=/path or qemu:///system.
	URI string
	// Group is the migration domain: VMs move only inside one group.
	Group string
	// PeerURI is how other hosts' libvirtd reach this one in a
	// peer-to-peer migration; empty means URI.
	PeerURI string
	// MigrationAddress is the address QEMU migration streams to this host
	// use; the host listens on it during an incoming migration. Empty lets
	// libvirt choose (the host's hostname, all addresses).
	MigrationAddress string
}

// Config lists the hosts and tunes the driver.
type Config struct {
	Hosts []HostConfig
	// CallTimeout bounds every call to a libvirtd except the migration
	// itself (which ctx bounds); 0 means DefaultCallTimeout.
	CallTimeout time.Duration
	// Bandwidth caps live migrations, in MiB/s; 0 means unlimited.
	Bandwidth uint64
	// KeepaliveInterval is how often idle connections are checked and
	// broken ones retried; 0 means DefaultKeepaliveInterval.
	KeepaliveInterval time.Duration
}

// Defaults of Config.
const (
	DefaultCallTimeout       = 30 * time.Second
	DefaultKeepaliveInterval = 5 * time.Second
)

// Driver manages the VMs of a set of libvirt hosts.
type Driver struct {
	log       *slog.Logger
	cfg       Config
	hosts     []*hostConn
	byName    map[string]*hostConn
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once

	dupMu sync.Mutex
	// dups are the duplicates the last inventory warned about, so that
	// each is logged once while it lasts.
	dups map[string]bool
}

var _ drivers.Driver = (*Driver)(nil)

// New connects to every host in cfg, in parallel and within ctx. A host
// that cannot be reached does not make New fail: Inventory reports it
// disconnected or not responding, and it is reconnected with backoff.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Driver, error) {
	if log == nil {
		log = slog.Default()
	}
	if len(cfg.Hosts) == 0 {
		return nil, errors.New("libvirt: no hosts configured")
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.KeepaliveInterval <= 0 {
		cfg.KeepaliveInterval = DefaultKeepaliveInterval
	}
	d := &Driver{
		log:    log.With("driver", "libvirt"),
		cfg:    cfg,
		byName: make(map[string]*hostConn, len(cfg.Hosts)),
		stop:   make(chan struct{}),
	}
	for _, hc := range cfg.Hosts {
		if hc.Name == "" {
			return nil, fmt.Errorf("libvirt: host with URI %q has no name", hc.URI)
		}
		if _, dup := d.byName[hc.Name]; dup {
			return nil, fmt.Errorf("libvirt: host %s configured twice", hc.Name)
		}
		h, err := newHostConn(hc, cfg.CallTimeout, d.log)
		if err != nil {
			return nil, fmt.Errorf("libvirt: %w", err)
		}
		d.hosts = append(d.hosts, h)
		d.byName[hc.Name] = h
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.CallTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, h := range d.hosts {
		wg.Go(func() {
			if _, err := h.session(ctx); err != nil {
				h.log.Warn("host unreachable, will retry", "err", err)
			}
		})
	}
	wg.Wait()
	for _, h := range d.hosts {
		d.wg.Go(func() { h.monitor(d.stop, cfg.KeepaliveInterval) })
	}
	return d, nil
}

// Close stops reconnecting and closes every connection. Calling it again
// does nothing.
func (d *Driver) Close() error {
	d.closeOnce.Do(func() {
		close(d.stop)
		d.wg.Wait()
		var wg sync.WaitGroup
		for _, h := range d.hosts {
			wg.Go(h.close)
		}
		wg.Wait()
		d.log.Info("disconnected")
	})
	return nil
}

// host resolves a configured host name.
func (d *Driver) host(name string) (*hostConn, error) {
	h, ok := d.byName[name]
	if !ok {
		return nil, fmt.Errorf("no host named %s: %w", name, drivers.ErrNotFound)
	}
	return h, nil
}

// peerURI is how other hosts' libvirtd reach h.
func (h *hostConn) peerURI() string {
	if h.cfg.PeerURI != "" {
		return h.cfg.PeerURI
	}
	return h.cfg.URI
}

// migrateURI is the QEMU migration URI for streams to h, or "".
func (h *hostConn) migrateURI() string {
	if h.cfg.MigrationAddress == "" {
		return ""
	}
	if ip := net.ParseIP(h.cfg.MigrationAddress); ip != nil && ip.To4() == nil {
		return "tcp://[" + h.cfg.MigrationAddress + "]"
	}
	return "tcp://" + h.cfg.MigrationAddress
}

// ProbeHost pings host's libvirtd (connecting first when needed) and
// reports its connection state; an error only for an unknown host or a
// cancelled ctx.
func (d *Driver) ProbeHost(ctx context.Context, host string) (drivers.Connection, error) {
	h, err := d.host(host)
	if err != nil {
		return "", fmt.Errorf("probe host %s: %w", host, err)
	}
	err = h.ping(ctx)
	if err != nil && errors.Is(err, context.Canceled) {
		return "", fmt.Errorf("probe host %s: %w", host, err)
	}
	state, last := h.status()
	if err != nil && state == drivers.Connected {
		// The ping failed but the connection stands (libvirtd answered
		// with an error): it is alive.
		d.log.Warn("ping answered with an error", "host", host, "err", err)
	}
	d.log.Debug("probed host", "host", host, "state", state, "err", last)
	return state, nil
}
