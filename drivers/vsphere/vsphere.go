// Package vsphere is Herd's driver for VMware vCenter, built on govmomi.
package vsphere

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/session/keepalive"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/herd-project/herd/drivers"
)

// Config says how to reach a vCenter.
type Config struct {
	// URL of the vCenter, e.g. https://vc.example.com/sdk; a bare host
	// name is accepted.
	URL      string
	Username string
	Password string
	// Insecure skips TLS certificate verification.
	Insecure bool
	// Datacenter to manage; empty means the only (or first) one.
	Datacenter string
}

const (
	// keepAliveIdle is how often the session is checked and renewed.
	keepAliveIdle = 5 * time.Minute
	// closeTimeout bounds the logout in Close.
	closeTimeout = 10 * time.Second
)

// Driver manages the VMs and hosts of one vCenter datacenter.
type Driver struct {
	log      *slog.Logger
	client   *govmomi.Client
	user     *url.Userinfo
	dc       *object.Datacenter
	vmFolder *object.Folder

	mu    sync.Mutex
	view  *view.ContainerView // created once per session, reused
	vms   map[string]types.ManagedObjectReference
	hosts map[string]hostInfo
	// devices caches the VMs' device lists for Inventory.
	devices map[types.ManagedObjectReference]cachedDevices
	closed  bool
}

var _ drivers.Driver = (*Driver)(nil)

// hostInfo is what actions need to place a VM on a host.
type hostInfo struct {
	ref   types.ManagedObjectReference
	pool  types.ManagedObjectReference // root pool of the host's cluster
	group string
}

// New logs in to the vCenter cfg names and keeps the session alive until
// Close.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Driver, error) {
	if log == nil {
		log = slog.Default()
	}
	u, err := soap.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("vsphere: parse URL %q: %w", cfg.URL, err)
	}
	if u == nil {
		return nil, errors.New("vsphere: no URL configured")
	}
	if cfg.Username != "" {
		u.User = url.UserPassword(cfg.Username, cfg.Password)
	}
	if u.User == nil {
		return nil, fmt.Errorf("vsphere: connect to %s: no credentials", u.Host)
	}
	d := &Driver{
		log:   log.With("driver", "vsphere", "vcenter", u.Host),
		user:  u.User,
		vms:   make(map[string]types.ManagedObjectReference),
		hosts: make(map[string]hostInfo),
	}
	vc, err := vim25.NewClient(ctx, soap.NewClient(u, cfg.Insecure))
	if err != nil {
		return nil, fmt.Errorf("vsphere: connect to %s: %w", u.Host, classify(err))
	}
	vc.RoundTripper = keepalive.NewHandlerSOAP(vc.RoundTripper, keepAliveIdle, d.keepAlive)
	d.client = &govmomi.Client{Client: vc, SessionManager: session.NewManager(vc)}
	if err := d.client.Login(ctx, u.User); err != nil {
		return nil, fmt.Errorf("vsphere: log in to %s as %s: %w", u.Host, u.User.Username(), classify(err))
	}
	if err := d.selectDatacenter(ctx, cfg.Datacenter); err != nil {
		d.logout()
		return nil, err
	}
	d.log.Info("connected", "datacenter", d.dc.Name(), "api", vc.ServiceContent.About.ApiVersion)
	return d, nil
}

// selectDatacenter finds the datacenter named name, or the first one.
func (d *Driver) selectDatacenter(ctx context.Context, name string) error {
	finder := find.NewFinder(d.client.Client, false)
	var dc *object.Datacenter
	if name != "" {
		var err error
		if dc, err = finder.Datacenter(ctx, name); err != nil {
			return fmt.Errorf("vsphere: find datacenter %q: %w", name, classify(err))
		}
	} else {
		list, err := finder.DatacenterList(ctx, "*")
		if err != nil {
			return fmt.Errorf("vsphere: list datacenters: %w", classify(err))
		}
		dc = list[0]
		if len(list) > 1 {
			d.log.Warn("several datacenters, using the first", "datacenter", dc.Name(), "count", len(list))
		}
	}
	folders, err := dc.Folders(ctx)
	if err != nil {
		return fmt.Errorf("vsphere: folders of datacenter %s: %w", dc.Name(), classify(err))
	}
	d.dc, d.vmFolder = dc, folders.VmFolder
	return nil
}

// keepAlive runs every keepAliveIdle: it logs in again when the session has
// expired. It never fails, so that the keep-alive loop goes on.
func (d *Driver) keepAlive() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := d.client.SessionManager.UserSession(ctx)
	if err != nil {
		d.log.Warn("session check failed", "err", err)
		return nil
	}
	if s != nil {
		return nil
	}
	d.log.Warn("session expired, logging in again")
	if err := d.client.SessionManager.Login(ctx, d.user); err != nil {
		d.log.Error("log in again failed", "err", err)
		return nil
	}
	d.mu.Lock()
	d.view = nil // views belong to the old session
	d.mu.Unlock()
	return nil
}

// Close logs out. Calling it again does nothing.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	if err := d.logout(); err != nil {
		return fmt.Errorf("vsphere: log out: %w", err)
	}
	d.log.Info("disconnected")
	return nil
}

func (d *Driver) logout() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	err := d.client.Logout(ctx)
	d.client.CloseIdleConnections()
	return classify(err)
}

// vmRef resolves a VM ID (instance UUID, or BIOS UUID for VMs that have
// none) through the cache, then through the SearchIndex.
func (d *Driver) vmRef(ctx context.Context, id string) (types.ManagedObjectReference, error) {
	d.mu.Lock()
	ref, ok := d.vms[id]
	d.mu.Unlock()
	if ok {
		return ref, nil
	}
	si := object.NewSearchIndex(d.client.Client)
	for _, instance := range []bool{true, false} {
		obj, err := si.FindByUuid(ctx, d.dc, id, true, &instance)
		if err != nil {
			return types.ManagedObjectReference{}, fmt.Errorf("find VM %s: %w", id, classify(err))
		}
		if obj != nil {
			ref = obj.Reference()
			d.rememberVM(id, ref)
			return ref, nil
		}
	}
	return types.ManagedObjectReference{}, fmt.Errorf("no VM with id %s: %w", id, drivers.ErrNotFound)
}

func (d *Driver) rememberVM(id string, ref types.ManagedObjectReference) {
	d.mu.Lock()
	d.vms[id] = ref
	d.mu.Unlock()
}

func (d *Driver) forgetVM(id string) {
	d.mu.Lock()
	delete(d.vms, id)
	d.mu.Unlock()
}

// host resolves a host name through the cache, refreshing the inventory
// once when the name is unknown.
func (d *Driver) host(ctx context.Context, name string) (hostInfo, error) {
	d.mu.Lock()
	h, ok := d.hosts[name]
	d.mu.Unlock()
	if ok {
		return h, nil
	}
	if _, err := d.Inventory(ctx); err != nil {
		return hostInfo{}, fmt.Errorf("look up host %s: %w", name, err)
	}
	d.mu.Lock()
	h, ok = d.hosts[name]
	d.mu.Unlock()
	if !ok {
		return hostInfo{}, fmt.Errorf("no host named %s: %w", name, drivers.ErrNotFound)
	}
	return h, nil
}

// failVM classifies err from an operation on VM id, forgetting the VM's
// cached reference when vCenter no longer knows it.
func (d *Driver) failVM(id string, err error) error {
	err = classify(err)
	if errors.Is(err, drivers.ErrNotFound) {
		d.forgetVM(id)
	}
	return err
}
