package libvirt

import (
	"context"
	"fmt"
	"sort"
	"sync"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/herd-project/herd/drivers"
)

const (
	// MaxDefinition bounds VM.Definition: a larger domain XML is not
	// stored (a cut one would be worse than none) and a warning is logged.
	MaxDefinition = 64 << 10
	// inventoryWorkers is how many domains of one host are read at once;
	// go-libvirt multiplexes their RPCs on the host's connection.
	inventoryWorkers = 8
)

// Inventory lists every configured host and the domains (active and
// inactive) on each. A host that is not connected is reported with its
// connection state and the VMs it had at its last successful listing, as a
// hypervisor manager does for a host it lost. A domain defined on several
// hosts is reported once per host: callers see the duplicate.
func (d *Driver) Inventory(ctx context.Context) (*drivers.Inventory, error) {
	hosts := make([]drivers.Host, len(d.hosts))
	vms := make([][]drivers.VM, len(d.hosts))
	var wg sync.WaitGroup
	for i, h := range d.hosts {
		wg.Go(func() { hosts[i], vms[i] = d.hostInventory(ctx, h) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("inventory: %w", timeoutError(ctx, "list hosts"))
	}
	inv := &drivers.Inventory{Hosts: hosts}
	for _, v := range vms {
		inv.VMs = append(inv.VMs, v...)
	}
	d.warnDuplicates(inv.VMs)
	return inv, nil
}

// hostInventory reads one host; on failure it reports the host's state and
// its cached VMs.
func (d *Driver) hostInventory(ctx context.Context, h *hostConn) (drivers.Host, []drivers.VM) {
	type listing struct {
		host drivers.Host
		vms  []drivers.VM
	}
	got, err := queryConnected(ctx, h, "inventory", func(l *golibvirt.Libvirt) (listing, error) {
		_, memKiB, cpus, mhz, _, _, _, _, err := l.NodeGetInfo()
		if err != nil {
			return listing{}, fmt.Errorf("node info: %w", err)
		}
		vms, err := h.listVMs(l)
		return listing{drivers.Host{MemoryBytes: int64(memKiB) << 10, CPUs: int(cpus), CPUMHz: int64(mhz)}, vms}, err
	})
	host := got.host
	host.Name, host.Group = h.cfg.Name, h.cfg.Group
	state, last := h.status()
	host.Connection = state
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.cache = got.vms
		return host, got.vms
	}
	if state == drivers.Connected {
		h.log.Warn("inventory failed", "err", err)
	} else {
		h.log.Debug("host not connected, reporting its last VMs", "state", state, "err", last, "vms", len(h.cache))
	}
	return host, append([]drivers.VM(nil), h.cache...)
}

// listVMs reads every domain of a host, inventoryWorkers at a time.
func (h *hostConn) listVMs(l *golibvirt.Libvirt) ([]drivers.VM, error) {
	doms, _, err := l.ConnectListAllDomains(1, golibvirt.ConnectListDomainsActive|golibvirt.ConnectListDomainsInactive)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	vms := make([]drivers.VM, len(doms))
	errs := make([]error, len(doms))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(inventoryWorkers, len(doms)) {
		wg.Go(func() {
			for i := range jobs {
				vms[i], errs[i] = h.readVM(l, doms[i])
			}
		})
	}
	for i := range doms {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	out := vms[:0]
	for i, err := range errs {
		switch {
		case err == nil:
			out = append(out, vms[i])
		case hasCode(err, golibvirt.ErrNoDomain):
			// Undefined between the listing and now.
		default:
			return nil, fmt.Errorf("read domain %s: %w", doms[i].Name, err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// readVM reads one domain: its state, size and XML. Active domains give
// their live XML, inactive ones their persistent one, both in the
// migratable form, fit for DomainDefineXML.
func (h *hostConn) readVM(l *golibvirt.Libvirt, dom golibvirt.Domain) (drivers.VM, error) {
	id := formatUUID(dom.UUID)
	state, maxMemKiB, _, vcpus, _, err := l.DomainGetInfo(dom)
	if err != nil {
		return drivers.VM{}, fmt.Errorf("info: %w", err)
	}
	st := golibvirt.DomainState(state)
	flags := golibvirt.DomainXMLMigratable
	if !(placement{state: st}).active() {
		flags |= golibvirt.DomainXMLInactive
	}
	doc, err := l.DomainGetXMLDesc(dom, flags)
	if err != nil {
		return drivers.VM{}, fmt.Errorf("XML: %w", err)
	}
	// A transient domain (an incoming migration) has no autostart: libvirt
	// answers with an error, read as off.
	autostart, err := l.DomainGetAutostart(dom)
	if err != nil {
		autostart = 0
	}
	vm := drivers.VM{
		ID:          id,
		Name:        dom.Name,
		Host:        h.cfg.Name,
		MemoryBytes: int64(maxMemKiB) << 10,
		VCPUs:       int(vcpus),
		Power:       powerState(st),
		Unmovable:   unmovableReason(doc),
		Autostart:   autostart == 1,
	}
	if len(doc) <= MaxDefinition {
		vm.Definition = []byte(doc)
	} else if h.warnOnce("large:" + id) {
		h.log.Warn("domain XML too large, not stored as its definition", "vm", id, "name", dom.Name, "bytes", len(doc), "max", MaxDefinition)
	}
	return vm, nil
}

// warnDuplicates logs the VM IDs listed on more than one host, once for
// as long as each duplicate lasts.
func (d *Driver) warnDuplicates(vms []drivers.VM) {
	seen := make(map[string]string, len(vms))
	now := map[string]bool{}
	d.dupMu.Lock()
	defer d.dupMu.Unlock()
	for _, vm := range vms {
		if other, ok := seen[vm.ID]; ok && other != vm.Host {
			k := vm.ID + "/" + other + "/" + vm.Host
			now[k] = true
			if !d.dups[k] {
				d.log.Warn("VM defined on two hosts", "vm", vm.ID, "name", vm.Name, "host", vm.Host, "other", other, "power", vm.Power)
			}
			continue
		}
		seen[vm.ID] = vm.Host
	}
	d.dups = now
}
