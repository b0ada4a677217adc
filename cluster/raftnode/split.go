package raftnode

import "github.com/herd-project/herd/cluster"

// MaxInventoryEntryBytes bounds the raft entries an inventory is written
// in: a first inventory of tens of thousands of VMs is written as many
// entries of at most about this size, never as one of hundreds of MiB that
// every follower must take whole.
const MaxInventoryEntryBytes = 2 << 20

// SplitInventory returns d as diffs of at most about max encoded bytes each, to be
// applied in order: upserted hosts first (so that VMs find their hosts),
// then upserted VMs, removed VMs and removed hosts. An event goes with the
// VM it names (so that a VM the state machine keeps from an older read
// keeps its events out too), else with the host it names; other events
// (a summary) come after everything. A diff that fits is returned as it is. Every diff carries d's
// other fields (driver, read index).
func SplitInventory(d *cluster.InventoryDiff, max int) []*cluster.InventoryDiff {
	if estimate(d) <= max {
		return []*cluster.InventoryDiff{d}
	}
	out := []*cluster.InventoryDiff{part(d)}
	sizes := []int{0}
	add := func(n int) *cluster.InventoryDiff {
		if last := len(out) - 1; sizes[last] > 0 && sizes[last]+n > max {
			out, sizes = append(out, part(d)), append(sizes, 0)
		}
		sizes[len(out)-1] += n
		return out[len(out)-1]
	}
	vmPart, hostPart := map[string]int{}, map[string]int{}
	for _, h := range d.UpsertHosts {
		c := add(hostBytes(&h))
		c.UpsertHosts = append(c.UpsertHosts, h)
		hostPart[h.Name] = len(out) - 1
	}
	for _, vm := range d.UpsertVMs {
		c := add(vmBytes(&vm))
		c.UpsertVMs = append(c.UpsertVMs, vm)
		vmPart[vm.ID] = len(out) - 1
	}
	for _, id := range d.RemoveVMs {
		c := add(len(id) + 8)
		c.RemoveVMs = append(c.RemoveVMs, id)
		vmPart[id] = len(out) - 1
	}
	for _, name := range d.RemoveHosts {
		c := add(len(name) + 8)
		c.RemoveHosts = append(c.RemoveHosts, name)
		hostPart[name] = len(out) - 1
	}
	// Events of a VM or host go with it (a few: a large inventory's events
	// are summarised); the others after everything, in more parts if need be.
	var rest []cluster.Event
	for _, e := range d.Events {
		i, ok := vmPart[e.VM]
		if !ok || e.VM == "" {
			i, ok = hostPart[e.Host]
			ok = ok && e.VM == "" && e.Host != ""
		}
		if !ok {
			rest = append(rest, e)
			continue
		}
		out[i].Events = append(out[i].Events, e)
		sizes[i] += eventBytes(&e)
	}
	for _, e := range rest {
		c := add(eventBytes(&e))
		c.Events = append(c.Events, e)
	}
	return out
}

// part is d without its hosts, VMs and events.
func part(d *cluster.InventoryDiff) *cluster.InventoryDiff {
	p := *d
	p.UpsertHosts, p.RemoveHosts, p.UpsertVMs, p.RemoveVMs, p.Events = nil, nil, nil, nil, nil
	return &p
}

// estimate is about (never much below) d's encoded size.
func estimate(d *cluster.InventoryDiff) int {
	n := 64
	for i := range d.UpsertHosts {
		n += hostBytes(&d.UpsertHosts[i])
	}
	for i := range d.UpsertVMs {
		n += vmBytes(&d.UpsertVMs[i])
	}
	for _, id := range d.RemoveVMs {
		n += len(id) + 8
	}
	for _, name := range d.RemoveHosts {
		n += len(name) + 8
	}
	for i := range d.Events {
		n += eventBytes(&d.Events[i])
	}
	return n
}

// The estimates below count each field's name and value, and a margin
// for fields added since.

func hostBytes(h *cluster.Host) int {
	n := 512 + len(h.Name) + len(h.Driver) + len(h.Group) + len(h.AdminReason) + len(h.Operation) + len(h.FencedBy) + len(h.FenceFailure)
	for k, v := range h.Labels {
		n += len(k) + len(v) + 10
	}
	return n
}

func vmBytes(vm *cluster.VM) int {
	return 384 + len(vm.ID) + len(vm.Name) + len(vm.Host) + len(vm.Driver) + len(vm.Unmovable) + len(vm.RecreatedFrom) + vm.Definition.StoredLen() + 48
}

func eventBytes(e *cluster.Event) int {
	return 160 + len(e.Type) + len(e.Actor) + len(e.Host) + len(e.VM) + len(e.Operation) + len(e.Message)
}
