package plan

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/failover"
	"github.com/herd-project/herd/policy/placement"
)

// The recovery of a fenced host, as the recovery controller builds it and
// the operations controller places it, and as `herd simulate failure`
// predicts it: one code path, so that the prediction cannot drift from what
// recovery does.

// RecoveryExcluded returns the VMs that recovery.exclude_vm_groups keep
// from being recreated elsewhere: they wait for their host.
func RecoveryExcluded(r policy.RecoveryPolicy, comp *placement.Compiled) map[string]bool {
	out := map[string]bool{}
	if comp == nil {
		return out
	}
	for _, g := range r.ExcludeVMGroups {
		for _, id := range comp.VMsIn(g) {
			out[id] = true
		}
	}
	return out
}

// RecoveryItems are the steps of the recovery of host, in the order they
// start: one per VM of vms, the VMs on it as State.VMsOn lists them (stale
// copies are not VMs) — running ones are
// recreated and started, shut-off ones registered only, excluded ones wait
// for their host — highest restart priority first, then VMs to start before
// VMs to register, larger memory first, then by name.
func RecoveryItems(vms []*cluster.VM, host string, comp *placement.Compiled, excluded map[string]bool) []cluster.OpItem {
	var items []cluster.OpItem
	for _, vm := range vms {
		prio := vm.Priority
		if comp != nil {
			prio = comp.Priority(vm)
		}
		it := cluster.OpItem{VM: vm.ID, Name: vm.Name, Action: cluster.ActionRegister, From: host, MemoryBytes: vm.MemoryBytes, Priority: prio}
		switch {
		case excluded[vm.ID]:
			// Not recreated elsewhere: it waits for its host, and runs
			// there again when the host returns.
			it.Action, it.WasRunning = cluster.ActionAwaitHost, vm.Power == cluster.PoweredOn
		case vm.Power == cluster.PoweredOn:
			it.Action = cluster.ActionRecreate
		}
		items = append(items, it)
	}
	sort.SliceStable(items, func(i, j int) bool {
		a, b := items[i], items[j]
		if a.Priority != b.Priority {
			return a.Priority > b.Priority
		}
		if (a.Action == cluster.ActionRecreate) != (b.Action == cluster.ActionRecreate) {
			return a.Action == cluster.ActionRecreate
		}
		if a.MemoryBytes != b.MemoryBytes {
			return a.MemoryBytes > b.MemoryBytes
		}
		return a.Name < b.Name
	})
	return items
}

// RecoveryOptions turns the placement options of automatic moves into
// those of a recreation: the failover hosts (Reserved) are no longer kept
// out but tried first, and no per-target limit applies.
func RecoveryOptions(o placement.Options) placement.Options {
	o.MaxInFlightTo, o.Prefer, o.Reserved = 0, o.Reserved, nil
	return o
}

// PlaceRecovered chooses the host a VM of a fenced host is recreated on,
// preferably not one an earlier attempt tried; o are RecoveryOptions.
func PlaceRecovered(st *cluster.State, usage map[string]cluster.HostUsage, l *placement.Ledger, vm *cluster.VM, tried []string, o placement.Options) placement.Placement {
	return placement.NextTarget(st, usage, l, vm, placement.EvacuationRequest{Host: vm.Host}, tried, o)
}

// RecoveryReserve is the memory a recreation holds on its target while it
// runs: none for a VM only registered there.
func RecoveryReserve(action string, vm *cluster.VM) int64 {
	if action == cluster.ActionRegister {
		return 0
	}
	return vm.MemoryBytes
}

// Why a recovery step would not start.
const (
	BlockedExcluded     = "excluded"      // recovery.exclude_vm_groups: it waits for its host
	BlockedNoDefinition = "no-definition" // nothing stored to recreate it from
	BlockedNoCapacity   = "no-capacity"   // no host has the memory or CPUs left
)

// RecoveryStep is one VM of a failed host in a recovery plan.
type RecoveryStep struct {
	// Order is when the step starts, from 1; 0 for a blocked step.
	Order       int    `json:"order,omitempty"`
	VM          string `json:"vm"`
	Name        string `json:"name"`
	From        string `json:"from"`
	Action      string `json:"action"` // recreate, register or await-host
	Priority    int    `json:"priority"`
	MemoryBytes int64  `json:"memory_bytes"`
	WasRunning  bool   `json:"was_running"`
	Target      string `json:"target,omitempty"`
	// Blocked is the rule or reason that keeps it from starting
	// (excluded, no-definition, no-capacity, or a placement reason such as
	// vm-host-affinity), Why says it in words.
	Blocked string `json:"blocked,omitempty"`
	Why     string `json:"why,omitempty"`
}

// RecoveryInput is what a recovery plan is made from.
type RecoveryInput struct {
	State *cluster.State
	// Ledger holds the moves in flight now (nil: none); it is not changed.
	Ledger *placement.Ledger
	// Failed are the hosts that fail, in the order their recoveries start.
	// Hosts already fenced and being recovered belong in Recovering.
	Failed []string
	// Usage is the state's usage when the caller has it (nil: counted
	// here); it is not changed.
	Usage *cluster.Usage
	// Policy is the compiled policy (nil: no rules); Recovery its section.
	Policy   *placement.Compiled
	Recovery policy.RecoveryPolicy
	// Options are the placement options of automatic moves, as the
	// operations controller has them; RecoveryOptions is applied here.
	Options placement.Options
}

// RecoveryPlan is the recovery Herd would run if the failed hosts were
// fenced now.
type RecoveryPlan struct {
	Failed []string       `json:"failed"`
	Steps  []RecoveryStep `json:"steps"`
	// Started counts the steps that start, by action; Blocked those that
	// do not.
	Recreated  int `json:"recreated"`
	Registered int `json:"registered"`
	Blocked    int `json:"blocked"`
	// FailoverAfter is the failover capacity (hosts the cluster can lose,
	// failover.Capacity) once the plan ran: the failed hosts neither fail
	// again nor take VMs, the recreated VMs run on their targets.
	FailoverAfter int `json:"failover_after"`
}

// FailHosts returns a view of st in which hosts are fenced (dead, confirmed
// off): it shares everything else with st and changes nothing in it.
func FailHosts(st *cluster.State, hosts []string) *cluster.State {
	v := *st
	v.Hosts = make(map[string]*cluster.Host, len(st.Hosts))
	for n, h := range st.Hosts {
		v.Hosts[n] = h
	}
	for _, n := range hosts {
		if h := st.Hosts[n]; h != nil && h.Health != cluster.HealthFenced {
			nh := *h
			nh.Health = cluster.HealthFenced
			v.Hosts[n] = &nh
		}
	}
	return &v
}

// vmsOn lists the VMs on each of hosts in one pass, each list as
// State.VMsOn orders it (name, then id).
func vmsOn(st *cluster.State, hosts []string) map[string][]*cluster.VM {
	out := make(map[string][]*cluster.VM, len(hosts))
	for _, h := range hosts {
		out[h] = nil
	}
	for _, vm := range st.VMs {
		if list, ok := out[vm.Host]; ok {
			out[vm.Host] = append(list, vm)
		}
	}
	for _, list := range out {
		slices.SortFunc(list, func(a, b *cluster.VM) int {
			return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.ID, b.ID))
		})
	}
	return out
}

// recoveryFlight is a recreation in flight in the plan.
type recoveryFlight struct {
	step *RecoveryStep
	vm   *cluster.VM
}

// Recovery predicts the recovery of in.Failed: the steps each host's
// recovery gets (RecoveryItems), started as the operations controller
// starts them — recoveries in order, each one's steps in order, at most
// recovery.concurrency at a time, each placed by PlaceRecovered at the
// moment it starts with the recreations in flight reserved in the ledger; a
// step whose placement must wait (a disruption budget) is passed over until
// a recreation ends, and recreations end in the order they started. A
// step that finds no host is blocked (recovery tries it again after its
// backoff, and it runs on its own host again when that returns). It reads
// its input and changes nothing.
func Recovery(in RecoveryInput) RecoveryPlan {
	st := FailHosts(in.State, in.Failed)
	l := in.Ledger.Clone()
	o := RecoveryOptions(in.Options)
	plan := RecoveryPlan{Failed: append([]string(nil), in.Failed...), Steps: []RecoveryStep{}}
	excluded := RecoveryExcluded(in.Recovery, in.Policy)
	var pending []*RecoveryStep
	on := vmsOn(in.State, in.Failed)
	for _, host := range in.Failed {
		for _, it := range RecoveryItems(on[host], host, in.Policy, excluded) {
			plan.Steps = append(plan.Steps, RecoveryStep{VM: it.VM, Name: it.Name, From: it.From, Action: it.Action,
				Priority: it.Priority, MemoryBytes: it.MemoryBytes, WasRunning: it.WasRunning || it.Action == cluster.ActionRecreate})
		}
	}
	for i := range plan.Steps {
		s := &plan.Steps[i]
		switch vm := st.VMs[s.VM]; {
		case s.Action == cluster.ActionAwaitHost:
			s.Blocked, s.Why = BlockedExcluded, "excluded from recovery (recovery.exclude_vm_groups): it waits for its host"
		case vm == nil || vm.Definition.IsZero():
			s.Blocked, s.Why = BlockedNoDefinition, "no stored definition to recreate it from"
		default:
			pending = append(pending, s)
		}
	}
	u := newPlanUsage(in.State, in.Usage)
	usage := u.hosts
	concurrency := max(in.Recovery.Concurrency, 1)
	var flying []recoveryFlight
	ownVMs := false // st.VMs is still in.State's map
	land := func() {
		f := flying[0]
		flying = flying[1:]
		l.Release(f.vm.ID)
		if !ownVMs {
			st.VMs, ownVMs = maps.Clone(st.VMs), true
		}
		nv := *f.vm
		nv.Host = f.step.Target
		if f.step.Action == cluster.ActionRecreate {
			nv.Power = cluster.PoweredOn
		}
		st.VMs[nv.ID] = &nv
		u.count(f.vm, -1)
		u.count(&nv, 1)
	}
	order := 0
	waits := map[*RecoveryStep]placement.Placement{}
	for len(pending) > 0 {
		var left []*RecoveryStep
		for i, s := range pending {
			if len(flying) >= concurrency {
				left = append(left, pending[i:]...)
				break
			}
			vm := st.VMs[s.VM]
			pl := PlaceRecovered(st, usage, l, vm, nil, o)
			switch {
			case pl.Host == "" && pl.Transient():
				waits[s] = pl
				left = append(left, s)
			case pl.Host == "":
				s.Blocked, s.Why = blockedBy(pl)
			default:
				order++
				s.Order, s.Target = order, pl.Host
				delete(waits, s)
				l.Reserve(vm.ID, vm.Host, pl.Host, RecoveryReserve(s.Action, vm))
				flying = append(flying, recoveryFlight{step: s, vm: vm})
			}
		}
		pending = left
		if len(pending) > 0 && len(flying) == 0 {
			// Nothing in flight can end to make room: they wait on
			// something outside this recovery.
			for _, s := range pending {
				s.Blocked, s.Why = blockedBy(waits[s])
			}
			break
		}
		if len(pending) > 0 {
			land()
		}
	}
	for len(flying) > 0 {
		land()
	}
	for _, s := range plan.Steps {
		switch {
		case s.Blocked != "":
			plan.Blocked++
		case s.Action == cluster.ActionRecreate:
			plan.Recreated++
		default:
			plan.Registered++
		}
	}
	plan.FailoverAfter = failover.CapacityOfUsage(st, &cluster.Usage{Hosts: u.hosts, RunningMemory: u.running}, in.Options)
	return plan
}

// planUsage is a usage a plan changes as VMs land, copied from the state's
// as it is changed: the hosts' sums, and each host's running VMs by size
// (what failover.CapacityOfUsage packs).
type planUsage struct {
	hosts   map[string]cluster.HostUsage
	running map[string]map[int64]int
	own     map[string]bool // hosts whose sizes map is the plan's
}

func newPlanUsage(st *cluster.State, u *cluster.Usage) *planUsage {
	if u == nil {
		u = st.CountUsage()
	}
	return &planUsage{hosts: maps.Clone(u.Hosts), running: maps.Clone(u.RunningMemory), own: map[string]bool{}}
}

// count adds vm (sign 1) or takes it out (-1), as cluster.Usage counts.
func (u *planUsage) count(vm *cluster.VM, sign int) {
	h := u.hosts[vm.Host]
	h.VMs += sign
	if vm.Power == cluster.PoweredOn {
		h.RunningVMs += sign
		h.MemoryUsedBytes += int64(sign) * vm.MemoryBytes
		h.VCPUsUsed += sign * vm.VCPUs
		if !u.own[vm.Host] {
			u.running[vm.Host], u.own[vm.Host] = maps.Clone(u.running[vm.Host]), true
			if u.running[vm.Host] == nil {
				u.running[vm.Host] = map[int64]int{}
			}
		}
		if sizes := u.running[vm.Host]; sizes[vm.MemoryBytes]+sign <= 0 {
			delete(sizes, vm.MemoryBytes)
		} else {
			sizes[vm.MemoryBytes] += sign
		}
	}
	u.hosts[vm.Host] = h
}

// ruleReasons are the placement reasons that a must rule gives.
var ruleReasons = map[string]bool{placement.ReasonVMHostAffinity: true, placement.ReasonVMHostAntiAffinity: true, placement.ReasonVMAffinity: true, placement.ReasonVMAntiAffinity: true}

// blockedBy names what keeps a placement from finding a host: a must rule
// when one rejected any host (its name in Detail), no-capacity when hosts
// were only short of memory or CPUs, else the most common reason.
func blockedBy(pl placement.Placement) (string, string) {
	why := strings.TrimPrefix(pl.Explain(), "no target: ")
	rule, top, n := "", "", 0
	for r, c := range pl.Rejections {
		if ruleReasons[r] && (rule == "" || r < rule) {
			rule = r
		}
		if c > n || c == n && r < top {
			top, n = r, c
		}
	}
	switch {
	case rule != "":
		return rule, fmt.Sprintf("a must rule leaves no host (%s): it waits for its host or for room", why)
	case pl.Rejections[placement.ReasonInsufficientMemory]+pl.Rejections[placement.ReasonCPUOvercommit] > 0 && top != placement.ReasonDisruptionBudget:
		return BlockedNoCapacity, "no host has room (" + why + "): tried again after its backoff"
	case top == "":
		return BlockedNoCapacity, "no host to recreate it on"
	}
	return top, why
}
