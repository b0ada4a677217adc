// Package inventory is the leader's inventory sync: one controller per
// driver copies the driver's inventory into the replicated state, as
// diffs (Diff, pure): unchanged hosts and VMs are not written again.
package inventory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/raftnode"
	"github.com/herd-project/herd/cluster/vmdef"
	"github.com/herd-project/herd/daemon/controller"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/internal/ctxsleep"
	"github.com/herd-project/herd/metrics"
)

// State is the replicated state as the sync reads it (cluster.FSM).
type State interface {
	// Index is the last applied raft index.
	Index() uint64
	// State is a copy of the state.
	State() *cluster.State
}

// Drivers opens drivers by name, and opens one again after Reset.
type Drivers interface {
	controller.Drivers
	Reset(name string)
}

// Deps are what a sync controller works with.
type Deps struct {
	State   State
	Raft    controller.Applier
	Drivers Drivers
	Metrics *metrics.Metrics
	Log     *slog.Logger
	// Interval between rounds; Timeout bounds one inventory read.
	Interval, Timeout time.Duration
}

// Controller syncs one driver's inventory while this server leads.
type Controller struct {
	d      Deps
	driver string
}

// New is the sync controller of driver.
func New(d Deps, driver string) *Controller { return &Controller{d: d, driver: driver} }

// Name names the controller in logs.
func (c *Controller) Name() string { return "inventory-sync/" + c.driver }

// Driver is the driver this controller syncs.
func (c *Controller) Driver() string { return c.driver }

// Run syncs every interval until ctx ends, backing off after a failure.
func (c *Controller) Run(ctx context.Context) {
	interval := c.d.Interval
	backoff := time.Second
	for ctx.Err() == nil {
		if _, err := c.Sync(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			c.d.Log.Warn("inventory sync failed", "driver", c.driver, "err", err, "retry_in", backoff)
			ctxsleep.Sleep(ctx, backoff)
			backoff = min(backoff*2, interval)
			continue
		}
		backoff = time.Second
		ctxsleep.Sleep(ctx, interval)
	}
}

// Result says what one sync round changed.
type Result struct {
	Diff     *cluster.InventoryDiff
	Duration time.Duration
}

// Sync reads the driver's inventory and writes what changed. Leader only.
func (c *Controller) Sync(ctx context.Context) (*Result, error) {
	start := time.Now()
	res, err := c.sync(ctx)
	result := "ok"
	if err != nil {
		result = "error"
	}
	m := c.d.Metrics
	m.InventorySyncs.WithLabelValues(c.driver, result).Inc()
	m.InventorySyncTime.WithLabelValues(c.driver).Observe(time.Since(start).Seconds())
	if res != nil {
		res.Duration = time.Since(start)
	}
	return res, err
}

func (c *Controller) sync(ctx context.Context) (*Result, error) {
	driver, m := c.driver, c.d.Metrics
	d, err := c.d.Drivers.Get(ctx, driver)
	if err != nil {
		return nil, err
	}
	tctx, cancel := context.WithTimeout(ctx, c.d.Timeout)
	defer cancel()
	// The state the read is against: a step that changes a VM after this
	// is newer than what the driver reports.
	readIndex := c.d.State.Index()
	inv, err := d.Inventory(tctx)
	if err != nil {
		if errors.Is(err, drivers.ErrUnreachable) || errors.Is(err, drivers.ErrTimeout) {
			c.d.Drivers.Reset(driver)
		}
		return nil, fmt.Errorf("inventory of %s: %w", driver, err)
	}
	st := c.d.State.State()
	diff := Diff(driver, st, inv, time.Now().UTC())
	diff.ReadIndex = readIndex
	m.VMDuplicates.WithLabelValues(driver).Set(float64(countDuplicates(st, inv)))
	if diff.Empty() {
		return &Result{Diff: diff}, nil
	}
	// A large inventory goes in bounded entries; one that fails part way
	// leaves the parts before it written, and the next round writes the rest.
	for _, part := range raftnode.SplitInventory(diff, raftnode.MaxInventoryEntryBytes) {
		if _, err := c.d.Raft.Apply(ctx, part); err != nil {
			return nil, fmt.Errorf("write inventory of %s: %w", driver, err)
		}
	}
	for kind, n := range map[string]int{"host_upsert": len(diff.UpsertHosts), "host_remove": len(diff.RemoveHosts),
		"vm_upsert": len(diff.UpsertVMs), "vm_remove": len(diff.RemoveVMs)} {
		if n > 0 {
			m.InventoryChanges.WithLabelValues(driver, kind).Add(float64(n))
		}
	}
	return &Result{Diff: diff}, nil
}

const syncActor = "inventory-sync"

// Diff compares a driver's inventory with the state and returns what
// changed, with an event for each change people care about. Pure.
func Diff(driver string, st *cluster.State, inv *drivers.Inventory, now time.Time) *cluster.InventoryDiff {
	d := &cluster.InventoryDiff{Driver: driver}
	ev := func(typ, host, vm, format string, args ...any) {
		e := cluster.Event{Time: now, Type: typ, Actor: syncActor, Host: host, VM: vm, Message: fmt.Sprintf(format, args...)}
		d.Events = append(d.Events, e)
	}
	seenHosts := map[string]bool{}
	for _, h := range inv.Hosts {
		seenHosts[h.Name] = true
		nh := cluster.Host{Name: h.Name, Driver: driver, Group: h.Group, MemoryBytes: h.MemoryBytes, CPUs: h.CPUs,
			CPUMHz: h.CPUMHz, Connection: cluster.Connection(h.Connection), Seen: now}
		old, ok := st.Hosts[h.Name]
		switch {
		case !ok:
			ev("inventory.host_added", h.Name, "", "host %s added (%d GiB, %d CPUs, %s)", h.Name, h.MemoryBytes>>30, h.CPUs, h.Connection)
		case old.Driver != driver:
			// A host name claimed by two drivers: keep the first.
			continue
		case old.Group == nh.Group && old.MemoryBytes == nh.MemoryBytes && old.CPUs == nh.CPUs &&
			old.CPUMHz == nh.CPUMHz && old.Connection == nh.Connection:
			continue
		case old.Connection != nh.Connection:
			ev("inventory.host_connection", h.Name, "", "host %s connection %s → %s", h.Name, old.Connection, nh.Connection)
		}
		d.UpsertHosts = append(d.UpsertHosts, nh)
	}
	for _, name := range st.HostNames() {
		if h := st.Hosts[name]; h.Driver == driver && !seenHosts[name] {
			d.RemoveHosts = append(d.RemoveHosts, name)
			ev("inventory.host_removed", name, "", "host %s is no longer in the inventory", name)
		}
	}
	lost := map[string]bool{}
	for _, h := range inv.Hosts {
		lost[h.Name] = h.Connection != drivers.Connected
	}
	seenVMs := map[string]bool{}
	for _, v := range dedupeVMs(st, withoutStale(st, inv.VMs), ev) {
		seenVMs[v.ID] = true
		nv := cluster.VM{ID: v.ID, Name: v.Name, Host: v.Host, Driver: driver, MemoryBytes: v.MemoryBytes,
			VCPUs: v.VCPUs, Power: cluster.PowerState(v.Power), Unmovable: v.Unmovable, Autostart: v.Autostart}
		// Definitions are compared by checksum, and compressed only when new.
		sameDef := false
		old, ok := st.VMs[v.ID]
		if ok && old.Host == nv.Host && (hostDown(st, nv.Host) || lost[nv.Host]) {
			// The VMs of a host that is dead, fenced or not connected keep
			// the power state they had when it was last seen well: recovery
			// starts what ran then, even after a fence (or the agent's
			// self-fencing) switched them off.
			nv.Power = old.Power
		}
		if ok {
			sameDef = old.Definition.Is(v.Definition)
			if old.Name == nv.Name && old.Host == nv.Host && old.MemoryBytes == nv.MemoryBytes && old.VCPUs == nv.VCPUs &&
				old.Power == nv.Power && old.Unmovable == nv.Unmovable && old.Autostart == nv.Autostart && sameDef {
				continue
			}
			if old.Host != nv.Host {
				ev("inventory.vm_moved", old.Host, nv.ID, "VM %s is now on %s (was %s)", nv.Name, nv.Host, old.Host)
				d.Events[len(d.Events)-1].Target = nv.Host
			}
			if old.Power != nv.Power {
				ev("inventory.vm_power", nv.Host, nv.ID, "VM %s is %s (was %s)", nv.Name, nv.Power, old.Power)
			}
		} else {
			ev("inventory.vm_added", nv.Host, nv.ID, "VM %s added on %s (%d MiB, %d vCPUs, %s)", nv.Name, nv.Host, nv.MemoryBytes>>20, nv.VCPUs, nv.Power)
		}
		if sameDef {
			nv.Definition = old.Definition
		} else {
			nv.Definition = vmdef.New(v.Definition)
		}
		d.UpsertVMs = append(d.UpsertVMs, nv)
	}
	var gone []*cluster.VM
	recovering := recoveringVMs(st)
	for id, vm := range st.VMs {
		// A VM a recovery still has to recreate is kept while missing: its
		// record holds the definition, and vCenter has none of it between
		// the original's unregistration and the new VM's creation (or
		// after a creation that failed there); the step records where it is.
		if vm.Driver == driver && !seenVMs[id] && !recovering[id] {
			gone = append(gone, vm)
		}
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i].ID < gone[j].ID })
	for _, vm := range gone {
		d.RemoveVMs = append(d.RemoveVMs, vm.ID)
		ev("inventory.vm_removed", vm.Host, vm.ID, "VM %s is no longer in the inventory", vm.Name)
	}
	// A first sync of a large inventory would flood the log: summarise.
	if len(d.Events) > 200 {
		d.Events = []cluster.Event{{Time: now, Type: "inventory.synced", Actor: syncActor,
			Message: fmt.Sprintf("driver %s: %d hosts and %d VMs changed, %d hosts and %d VMs removed",
				driver, len(d.UpsertHosts), len(d.UpsertVMs), len(d.RemoveHosts), len(d.RemoveVMs))}}
	}
	return d
}

// dedupeVMs keeps one entry per VM id. A VM reported on two hosts (the
// paused incoming copy of an aborted migration, a stale copy on a host that
// came back) is kept where it runs, else where Herd already has it, and
// the duplicate is logged as an event: it must never be taken for a move.
func dedupeVMs(st *cluster.State, vms []drivers.VM, ev func(typ, host, vm, format string, args ...any)) []drivers.VM {
	idx := make(map[string]int, len(vms))
	out := make([]drivers.VM, 0, len(vms))
	for _, v := range vms {
		i, dup := idx[v.ID]
		if !dup {
			idx[v.ID] = len(out)
			out = append(out, v)
			continue
		}
		kept := out[i]
		better := v.Power == drivers.PoweredOn && kept.Power != drivers.PoweredOn
		if !better && v.Power == kept.Power {
			if old := st.VMs[v.ID]; old != nil && old.Host == v.Host {
				better = true
			}
		}
		if better {
			out[i], kept, v = v, v, kept
		}
		ev("inventory.vm_duplicate", v.Host, v.ID, "VM %s is also reported on %s (%s); kept on %s (%s)", v.Name, v.Host, v.Power, kept.Host, kept.Power)
	}
	return out
}

// withoutStale drops the copies that are known stale copies (a VM's
// leftover on a host that was fenced, recreated elsewhere under the same
// id): they are not where the VM is.
func withoutStale(st *cluster.State, vms []drivers.VM) []drivers.VM {
	if len(st.StaleCopies) == 0 {
		return vms
	}
	out := make([]drivers.VM, 0, len(vms))
	for _, v := range vms {
		if _, stale := st.StaleCopies[cluster.StaleKey(v.Host, v.ID)]; !stale {
			out = append(out, v)
		}
	}
	return out
}

// recoveringVMs are the VMs whose recovery step has not ended.
func recoveringVMs(st *cluster.State) map[string]bool {
	out := map[string]bool{}
	for _, op := range st.Operations {
		if op.Kind != cluster.OpRecover || op.State != cluster.OpRunning {
			continue
		}
		for _, it := range op.Items {
			if !it.State.Terminal() {
				out[it.VM] = true
			}
		}
	}
	return out
}

// countDuplicates counts VM ids reported on more than one connected host
// (what a manager lists of a host it cannot reach is its memory, not a
// sighting). A known stale copy counts only when it runs: a leftover
// waiting to be destroyed is not a VM on two hosts, a stale copy that runs
// is exactly that.
func countDuplicates(st *cluster.State, inv *drivers.Inventory) int {
	connected := make(map[string]bool, len(inv.Hosts))
	for _, h := range inv.Hosts {
		connected[h.Name] = h.Connection == drivers.Connected
	}
	seen := make(map[string]int, len(inv.VMs))
	n := 0
	for _, v := range inv.VMs {
		if !connected[v.Host] {
			continue
		}
		if _, stale := st.StaleCopies[cluster.StaleKey(v.Host, v.ID)]; stale && v.Power != drivers.PoweredOn {
			continue
		}
		seen[v.ID]++
		if seen[v.ID] == 2 {
			n++
		}
	}
	return n
}

// hostDown reports whether host is dead or fenced.
func hostDown(st *cluster.State, host string) bool {
	h := st.Hosts[host]
	return h != nil && (h.Health == cluster.HealthDead || h.Health == cluster.HealthFenced)
}
