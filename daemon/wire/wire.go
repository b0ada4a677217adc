// Package wire converts the replicated state (package cluster) to the
// API's wire types (package daemon/api), which have fields of their own: a
// change to the replicated state changes the API only through here.
// TestWireFormatUnchanged pins what the converters answer,
// TestWireCarriesEveryField that every field of the state is carried (or
// deliberately left out).
package wire

import (
	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/gossip"
	"github.com/herd-project/herd/cluster/raftnode"
	"github.com/herd-project/herd/daemon/api"
)

// Host is the view of h with its usage and the number of stale copies
// it holds (whose power is unknown: the host is not empty with them).
func Host(h *cluster.Host, u cluster.HostUsage, stale int) api.Host {
	return api.Host{
		Name: h.Name, Driver: h.Driver, Group: h.Group,
		Admin: api.AdminStatus(h.Admin), AdminReason: h.AdminReason,
		Maintenance: api.MaintenanceState(h.Maintenance), Operation: h.Operation,
		Health: api.HostHealth(h.Health), Connection: api.Connection(h.Connection),
		MemoryBytes: h.MemoryBytes, CPUs: h.CPUs, CPUMHz: h.CPUMHz, Labels: h.Labels,
		DownSince: h.DownSince, FencedBy: h.FencedBy, FenceFailure: h.FenceFailure, LeaseTTL: h.LeaseTTL, Seen: h.Seen,

		VMs: u.VMs, RunningVMs: u.RunningVMs, MemoryUsedBytes: u.MemoryUsedBytes, VCPUsUsed: u.VCPUsUsed,

		Empty: u.RunningVMs == 0 && stale == 0, StaleCopies: stale,
		MaintenanceNote: cluster.MaintenanceNote(h.Name, h.Maintenance, u.RunningVMs, stale),
	}
}

// StaleCopy is a stale copy; its power is unknown (Herd never reads
// it, it only destroys it) and vmHost is where its VM is now.
func StaleCopy(c *cluster.StaleCopy, vmHost string) api.StaleCopyView {
	return api.StaleCopyView{VM: c.VM, ID: c.ID, Name: c.Name, Host: c.Host, Driver: c.Driver, Since: c.Since,
		VMHost: vmHost, Power: "unknown"}
}

func Silence(s *cluster.Silence) *api.Silence {
	if s == nil {
		return nil
	}
	return &api.Silence{Host: s.Host, ID: s.ID, Operation: s.Operation, StartsAt: s.StartsAt, EndsAt: s.EndsAt}
}

// VM is vm without its (possibly large) definition and its
// bookkeeping (recreated_from, stale, step_index).
func VM(vm *cluster.VM) api.VMView {
	return api.VMView{ID: vm.ID, Name: vm.Name, Host: vm.Host, Driver: vm.Driver, MemoryBytes: vm.MemoryBytes,
		VCPUs: vm.VCPUs, Power: api.PowerState(vm.Power), Priority: vm.Priority, Unmovable: vm.Unmovable, Autostart: vm.Autostart}
}

// Operation is op with its totals.
func Operation(op *cluster.Operation) api.Operation {
	c := op.Counts()
	out := api.Operation{
		ID: op.ID, Kind: api.OpKind(op.Kind), Host: op.Host, Parent: op.Parent, State: api.OpState(op.State),
		Migrate: op.Migrate, TargetHost: op.TargetHost, Actor: op.Actor,
		Created: op.Created, Updated: op.Updated, Progress: op.Progress, Error: op.Error,
		MaxAttempts: op.MaxAttempts, Detected: op.Detected, Items: make([]api.OpItem, len(op.Items)),

		Total: len(op.Items), Done: c[cluster.ItemDone], Running: c[cluster.ItemRunning],
		Pending: c[cluster.ItemPending], Failed: c[cluster.ItemFailed], Cancelled: c[cluster.ItemCancelled],
		Stopping: op.State == cluster.OpRunning && op.Cancelled,
	}
	if op.Items == nil {
		out.Items = nil
	}
	for i, it := range op.Items {
		out.Items[i] = api.OpItem{VM: it.VM, Name: it.Name, Action: it.Action, From: it.From,
			MemoryBytes: it.MemoryBytes, Priority: it.Priority, Planned: it.Planned, Target: it.Target, NewID: it.NewID,
			WasRunning: it.WasRunning, State: api.ItemState(it.State), Attempts: it.Attempts,
			TargetLosses: it.TargetLosses, SourceLosses: it.SourceLosses, Tried: it.Tried, Error: it.Error, Started: it.Started, Finished: it.Finished}
	}
	return out
}

// Events converts the action log's entries; never nil.
func Events(events []cluster.Event) []api.Event {
	out := make([]api.Event, len(events))
	for i, e := range events {
		out[i] = api.Event{Seq: e.Seq, Time: e.Time, Type: e.Type, Actor: e.Actor, Host: e.Host, VM: e.VM,
			Operation: e.Operation, Message: e.Message, Target: e.Target}
	}
	return out
}

// Gossip converts the gossip pool as this server sees it; nil for none.
func Gossip(members []gossip.Member) []api.GossipMember {
	if members == nil {
		return nil
	}
	out := make([]api.GossipMember, len(members))
	for i, m := range members {
		out[i] = api.GossipMember{Name: m.Name, Addr: m.Addr, State: m.State,
			Meta: api.MemberMeta{Role: m.Meta.Role, Host: m.Meta.Host, API: m.Meta.API, Hypervisor: m.Meta.Hypervisor}}
	}
	return out
}

func RaftStats(r raftnode.Stats) api.RaftStats {
	return api.RaftStats{State: r.State, Term: r.Term, LastLogIndex: r.LastLogIndex, LastLogTerm: r.LastLogTerm,
		CommitIndex: r.CommitIndex, AppliedIndex: r.AppliedIndex, LastContactMillis: r.LastContactMillis}
}

// Policy is the policy in force without its text (GET /v1/policy
// answers that as YAML).
func Policy(p *cluster.Policy) *api.PolicyInfo {
	if p == nil {
		return nil
	}
	return &api.PolicyInfo{Version: p.Version, Hash: p.Hash, Source: p.Source, Updated: p.Updated}
}
