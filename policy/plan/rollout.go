// Package plan holds the planners of operations over many VMs or hosts:
// rolling maintenances (waves, ledger, blockers), recoveries of failed
// hosts (which VM goes where, what waits), and the steps an evacuation or a
// recovery starts with. Pure: each takes a snapshot and returns a plan.
package plan

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/failover"
	"github.com/herd-project/herd/policy/placement"
)

// Rollout orders.
const (
	OrderFewestVMs = "fewest-vms"
	OrderGroup     = "group"
	OrderRack      = "rack"
	OrderListed    = "listed"
)

// RolloutOrders lists the valid --order values.
var RolloutOrders = []string{OrderFewestVMs, OrderGroup, OrderRack, OrderListed}

// RolloutRequest is what a rollout plan is asked for.
type RolloutRequest struct {
	// Hosts in the order listed (the caller resolves --all and --group).
	Hosts    []string
	Parallel int
	Order    string
	// Migrate is the evacuation mode: active-only or all (default all).
	Migrate placement.MigrateMode
	// MinHostFailures is the policy's failover.min_host_failures.
	MinHostFailures int
	// Limits are the migration limits (for the duration estimate).
	Limits placement.Limits
	// History is what past migrations took.
	History MigrationHistory
}

// MigrationHistory is what the server measured of past migrations
// (herd_migration_duration_seconds): how many, and their summed duration.
type MigrationHistory struct {
	Count   uint64
	Seconds float64
}

// DefaultMigrationSeconds is the estimate of one migration without history.
const DefaultMigrationSeconds = 30.0

// Mean is the mean duration of one migration, and whether it comes from
// history (else DefaultMigrationSeconds).
func (h MigrationHistory) Mean() (float64, bool) {
	if h.Count == 0 || h.Seconds <= 0 {
		return DefaultMigrationSeconds, false
	}
	return h.Seconds / float64(h.Count), true
}

// RolloutPlanVM is one VM of a host of the plan and where it would go.
type RolloutPlanVM struct {
	VM          string `json:"vm"`
	Name        string `json:"name"`
	Action      string `json:"action"`
	Target      string `json:"target,omitempty"`
	MemoryBytes int64  `json:"memory_bytes"`
}

// RolloutPlanHost is one host of the plan.
type RolloutPlanHost struct {
	Host string          `json:"host"`
	Wave int             `json:"wave"`
	VMs  []RolloutPlanVM `json:"vms"`
	// Blockers say why the host cannot go through maintenance now.
	Blockers         []string `json:"blockers"`
	EstimatedSeconds float64  `json:"estimated_seconds"`
}

// LedgerEntry is a host's memory as the plan leaves it after a wave.
type LedgerEntry struct {
	Host      string `json:"host"`
	UsedBytes int64  `json:"used_bytes"`
	FreeBytes int64  `json:"free_bytes"`
}

// RolloutWave is a set of hosts out at once.
type RolloutWave struct {
	Number int      `json:"number"`
	Hosts  []string `json:"hosts"`
	// Out is every host out of service during the wave (its hosts).
	EstimatedSeconds float64 `json:"estimated_seconds"`
	// Ledger is, for the hosts that take VMs in this wave, the memory
	// they use once the wave's VMs are on them.
	Ledger []LedgerEntry `json:"ledger"`
}

// RolloutPlan is the whole rollout before anything moves.
type RolloutPlan struct {
	// Parallel is the number of hosts out at once the plan uses: the one
	// asked for, lowered to what failover capacity allows.
	Parallel int `json:"parallel"`
	// ParallelNote says why Parallel is lower than asked, when it is.
	ParallelNote string `json:"parallel_note,omitempty"`
	// FailoverCapacity is how many host failures the cluster absorbs now.
	FailoverCapacity int               `json:"failover_capacity"`
	Waves            []RolloutWave     `json:"waves"`
	Hosts            []RolloutPlanHost `json:"hosts"`
	// Blockers are the plan's own (not a host's).
	Blockers []string `json:"blockers"`
	// MigrationSeconds is the duration assumed per migration, and
	// FromHistory whether it is the measured mean.
	MigrationSeconds float64 `json:"migration_seconds"`
	FromHistory      bool    `json:"from_history"`
	EstimatedSeconds float64 `json:"estimated_seconds"`
}

// OK reports whether nothing blocks the plan.
func (p *RolloutPlan) OK() bool {
	if len(p.Blockers) > 0 {
		return false
	}
	for _, h := range p.Hosts {
		if len(h.Blockers) > 0 {
			return false
		}
	}
	return true
}

// Rollout plans a rolling maintenance: the hosts in order, in waves of
// at most Parallel hosts (never more than the failover capacity above
// failover.min_host_failures allows), each host's VMs and where they would
// go with the capacity of the hosts already out taken away and the moves
// of earlier waves kept (VMs do not move back), the blockers per host, and
// an estimated duration. Targets are estimates: an evacuation chooses each
// target again as it moves the VM.
func Rollout(s *cluster.State, req RolloutRequest, o placement.Options) RolloutPlan {
	p := RolloutPlan{Waves: []RolloutWave{}, Hosts: []RolloutPlanHost{}, Blockers: []string{}}
	mode := req.Migrate
	if mode == "" {
		mode = placement.MigrateAll
	}
	p.MigrationSeconds, p.FromHistory = req.History.Mean()
	p.FailoverCapacity = failover.Capacity(s, o)
	p.Parallel = max(req.Parallel, 1)
	if m := req.MinHostFailures; m > 0 {
		allowed := p.FailoverCapacity - m
		switch {
		case allowed < 1:
			p.Blockers = append(p.Blockers, fmt.Sprintf("failover capacity is %d host(s): taking one host out leaves fewer than the policy minimum of %d (failover.min_host_failures)", p.FailoverCapacity, m))
			p.Parallel = 1
		case allowed < p.Parallel:
			p.ParallelNote = fmt.Sprintf("parallel lowered from %d to %d: failover capacity is %d host(s) and the policy keeps %d (failover.min_host_failures)", p.Parallel, allowed, p.FailoverCapacity, m)
			p.Parallel = allowed
		}
	}

	hosts := orderHosts(s, req.Hosts, req.Order)
	waves := cutWaves(s, hosts, p.Parallel, req.Order)

	// The planning model: each host's VMs and usage as earlier waves leave them.
	usage := s.Usage()
	onHost := make(map[string][]*cluster.VM, len(s.Hosts))
	for _, vm := range s.VMs {
		onHost[vm.Host] = append(onHost[vm.Host], vm)
	}
	limits := req.Limits
	if limits.PerSource < 1 || limits.Cluster < 1 {
		limits = placement.DefaultLimits()
	}
	for wi, wave := range waves {
		w := RolloutWave{Number: wi + 1, Hosts: wave, Ledger: []LedgerEntry{}}
		out := make(map[string]bool, len(wave))
		for _, h := range wave {
			out[h] = true
		}
		wo := o
		wo.Exclude = out
		wo.MaxInFlightTo = 0
		touched := map[string]bool{}
		moving := 0
		budgeted := map[policy.DisruptionBudget]int{} // VMs of the wave under each budget
		for _, name := range wave {
			ph := planHost(s, usage, onHost, name, mode, wo, touched)
			ph.Wave = w.Number
			moving += len(ph.VMs)
			if o.Policy != nil {
				for _, v := range ph.VMs {
					if vm := s.VMs[v.VM]; vm != nil && v.Target != "" {
						for _, b := range o.Policy.BudgetsFor(vm) {
							budgeted[b]++
						}
					}
				}
			}
			ph.EstimatedSeconds = math.Ceil(float64(len(ph.VMs))/float64(limits.PerSource)) * p.MigrationSeconds
			w.EstimatedSeconds = max(w.EstimatedSeconds, ph.EstimatedSeconds)
			p.Hosts = append(p.Hosts, ph)
		}
		// The cluster-wide limit caps the wave's migrations at once, and
		// each disruption budget those of its VM group: the migration gate
		// holds the rest, so the wave takes longer (it never has more
		// migrating at once).
		w.EstimatedSeconds = max(w.EstimatedSeconds, math.Ceil(float64(moving)/float64(limits.Cluster))*p.MigrationSeconds)
		for b, n := range budgeted {
			w.EstimatedSeconds = max(w.EstimatedSeconds, math.Ceil(float64(n)/float64(b.MaxMigrating))*p.MigrationSeconds)
		}
		for _, h := range slices.Sorted(maps.Keys(touched)) {
			host := s.Hosts[h]
			used := usage[h].MemoryUsedBytes
			w.Ledger = append(w.Ledger, LedgerEntry{Host: h, UsedBytes: used, FreeBytes: placement.Usable(host, o.Resolved().MemoryReserve) - used})
		}
		p.EstimatedSeconds += w.EstimatedSeconds
		p.Waves = append(p.Waves, w)
	}
	return p
}

// planHost plans the evacuation of one host of a wave: its VMs, where each
// goes (moving them in the model: usage, and the VMs on each host), and its
// blockers. Each VM is placed as an evacuation places it (Place, which
// samples among many hosts), from the host it is on in the model, with
// every host of the wave excluded.
func planHost(s *cluster.State, usage map[string]cluster.HostUsage, onHost map[string][]*cluster.VM,
	name string, mode placement.MigrateMode, o placement.Options, touched map[string]bool) RolloutPlanHost {
	ph := RolloutPlanHost{Host: name, VMs: []RolloutPlanVM{}, Blockers: []string{}}
	src := s.Hosts[name]
	if src == nil {
		ph.Blockers = append(ph.Blockers, fmt.Sprintf("unknown host %q", name))
		return ph
	}
	if why := placement.NotOperating(src); why != "" {
		ph.Blockers = append(ph.Blockers, why)
	}
	switch {
	case src.Maintenance != cluster.MaintenanceOff:
		ph.Blockers = append(ph.Blockers, fmt.Sprintf("already in maintenance (%s, operation %s)", src.Maintenance, src.Operation))
	case src.Admin == cluster.Offline:
		ph.Blockers = append(ph.Blockers, "OFFLINE (declared dead): it needs recovery, not maintenance")
	}
	vms := slices.Clone(onHost[name])
	placement.Order(vms)
	var stay []*cluster.VM
	for _, vm := range vms {
		action, _ := placement.Decide(vm, mode, false)
		pv := RolloutPlanVM{VM: vm.ID, Name: vm.Name, Action: action, MemoryBytes: vm.MemoryBytes}
		switch {
		case action == placement.ActionStay:
			stay = append(stay, vm)
			ph.VMs = append(ph.VMs, pv)
			continue
		case action == "":
			ph.Blockers = append(ph.Blockers, fmt.Sprintf("VM %s: power state %q unknown", vm.Name, vm.Power))
			stay = append(stay, vm)
			continue
		case vm.Unmovable != "":
			ph.Blockers = append(ph.Blockers, fmt.Sprintf("VM %s cannot migrate: %s", vm.Name, vm.Unmovable))
			stay = append(stay, vm)
			continue
		}
		here := vm
		if vm.Host != name {
			moved := *vm
			moved.Host = name
			here = &moved
		}
		// The plan places on capacity; moves in flight are the gate's,
		// so the ledger is empty (and never nil: rules read it).
		pl := placement.Place(s, usage, emptyLedger, here, o)
		if pl.Host == "" {
			why := pl.Explain()
			if pl.Rejections[placement.ReasonInsufficientMemory] > 0 {
				why = "not enough capacity: " + why
			}
			ph.Blockers = append(ph.Blockers, fmt.Sprintf("VM %s: %s", vm.Name, why))
			stay = append(stay, vm)
			continue
		}
		pv.Target = pl.Host
		ph.VMs = append(ph.VMs, pv)
		// Move it in the model: later hosts and waves see it there.
		need := placement.MemoryNeed(vm)
		su, tu := usage[name], usage[pl.Host]
		su.VMs--
		tu.VMs++
		if need > 0 {
			su.RunningVMs--
			su.MemoryUsedBytes -= need
			su.VCPUsUsed -= vm.VCPUs
			tu.RunningVMs++
			tu.MemoryUsedBytes += need
			tu.VCPUsUsed += vm.VCPUs
		}
		usage[name], usage[pl.Host] = su, tu
		onHost[pl.Host] = append(onHost[pl.Host], vm)
		touched[pl.Host] = true
	}
	onHost[name] = stay
	return ph
}

// emptyLedger is the ledger the plan places with: nothing in flight. It is
// only read.
var emptyLedger = placement.NewLedger()

// groupKey is a host's key for --order group or rack.
func groupKey(h *cluster.Host, order string) string {
	if order == OrderRack {
		return h.Labels["rack"]
	}
	return h.Driver + "/" + h.Group
}

// orderHosts sorts the hosts for the rollout. Unknown hosts keep their
// place (they are blockers).
func orderHosts(s *cluster.State, names []string, order string) []string {
	out := slices.Clone(names)
	if order == OrderListed {
		return out
	}
	counts := make(map[string]int, len(names))
	for _, vm := range s.VMs {
		counts[vm.Host]++
	}
	slices.SortStableFunc(out, func(a, b string) int {
		ha, hb := s.Hosts[a], s.Hosts[b]
		if ha == nil || hb == nil {
			return 0
		}
		if order == OrderGroup || order == OrderRack {
			if c := cmp.Compare(groupKey(ha, order), groupKey(hb, order)); c != 0 {
				return c
			}
		}
		if c := cmp.Compare(counts[a], counts[b]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	return out
}

// cutWaves cuts the ordered hosts into waves of at most parallel hosts; by
// group or rack, a wave never spans two groups (one rack at a time).
func cutWaves(s *cluster.State, hosts []string, parallel int, order string) [][]string {
	var waves [][]string
	var cur []string
	key := ""
	for _, name := range hosts {
		k := ""
		if h := s.Hosts[name]; h != nil && (order == OrderGroup || order == OrderRack) {
			k = groupKey(h, order)
		}
		if len(cur) == parallel || (len(cur) > 0 && k != key) {
			waves = append(waves, cur)
			cur = nil
		}
		cur, key = append(cur, name), k
	}
	if len(cur) > 0 {
		waves = append(waves, cur)
	}
	return waves
}
