// Package balance is the leader's balancer: every balancing interval it
// plans (balancing.Compute) with the policy in force, the moves in
// flight and, for the cpu metric, Prometheus; in recommend mode it keeps
// the plan for people to read, in automatic mode it starts it as an
// operation that the operations controller runs through the same
// migration gate as maintenance. It also reports must-rule violations.
package balance

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/controller"
	"github.com/herd-project/herd/metrics"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/balancing"
	"github.com/herd-project/herd/policy/placement"
)

// State is the replicated state as the balancer reads it (cluster.FSM).
type State interface {
	controller.State
	// Index is the last applied raft index.
	Index() uint64
	// Policy is the policy in force as stored (nil before the first).
	Policy() *cluster.Policy
	// Watch sends each applied index to ch, without blocking.
	Watch(ch chan<- uint64)
}

// Ledger holds the moves in flight (the operations controller).
type Ledger interface {
	// Reservations is a copy of the moves in flight's reservations.
	Reservations() *placement.Ledger
}

// Clock is the time windows are read against.
type Clock interface{ Now() time.Time }

// Deps are what the balancer works with.
type Deps struct {
	State  State
	Raft   controller.Applier
	Ledger Ledger
	Clock  Clock
	// Policy is the policy in force.
	Policy func() *policy.Document
	// Options are the placement options the policy gives for st.
	Options func(doc *policy.Document, st *cluster.State, perTarget int) placement.Options
	// Compiled is the policy's rules compiled against st.
	Compiled func(doc *policy.Document, st *cluster.State) *placement.Compiled
	// HostCPU asks Prometheus for each host's CPU utilisation (0 to 1).
	HostCPU func(ctx context.Context, src *policy.PrometheusSource, st *cluster.State) (map[string]float64, error)
	// Frozen are the hosts balancing leaves alone, and why.
	Frozen func(st *cluster.State) map[string]string
	// Busy names the running operation a VM is a step of, or "".
	Busy func(st *cluster.State, vm string) string
	// NewOpID names a new operation.
	NewOpID func() string
	// Record writes an event, through the leader when needed.
	Record  func(ctx context.Context, e cluster.Event)
	Metrics *metrics.Metrics
	Log     *slog.Logger
}

// Controller plans on the leader every balancing interval. A new policy
// wakes it at once: a changed mode or interval takes effect now, not once
// the interval read before it has run out.
type Controller struct {
	d    Deps
	wake chan uint64 // applied raft indexes (see FSM.Watch)
	mu   sync.Mutex
	last *api.BalancePlan
	// violated holds the must-rule violations last reported (VM and
	// rule), checkedAt the index they were checked at.
	violated  map[string]bool
	checkedAt uint64
	// waitedFor is the window opening last logged as waited for.
	waitedFor time.Time
	// fallbackMu and lastFallback: a fallback from the cpu metric to
	// memory is logged at most once a minute.
	fallbackMu   sync.Mutex
	lastFallback time.Time
}

// New is the balancer; it watches the state from now on.
func New(d Deps) *Controller {
	b := &Controller{d: d, wake: make(chan uint64, 1)}
	d.State.Watch(b.wake)
	return b
}

// Name names the controller in logs.
func (b *Controller) Name() string { return "balancer" }

// Run plans every interval until ctx ends.
func (b *Controller) Run(ctx context.Context) {
	version := b.policyVersion()
	b.violated, b.checkedAt = nil, 0 // a new leader reports what it finds
	for ctx.Err() == nil {
		bp := b.d.Policy().Balancing
		b.checkRules(ctx)
		interval := bp.Interval
		if bp.Mode != policy.BalanceOff {
			plan := b.Plan(ctx)
			b.mu.Lock()
			b.last = plan
			b.mu.Unlock()
			inWindow := plan.Window == nil || plan.Window.Open
			if bp.Mode == policy.BalanceAutomatic && len(plan.Moves) > 0 && !inWindow {
				b.noteWindowWait(ctx, plan.Window)
			} else if bp.Mode == policy.BalanceAutomatic && len(plan.Moves) > 0 {
				if _, err := b.Start(ctx, plan, "balancer"); err != nil {
					b.d.Log.Info("automatic balancing did not start", "reason", err)
				}
			}
			interval = untilWindow(interval, plan.Window, b.d.Clock.Now())
		}
		version = b.sleep(ctx, interval, version)
	}
}

// sleep waits for interval, or until the policy in force is no longer
// version; it returns the version in force then.
func (b *Controller) sleep(ctx context.Context, interval time.Duration, version int) int {
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return version
		case <-t.C:
			return b.policyVersion()
		case <-b.wake:
			if v := b.policyVersion(); v != version {
				return v
			}
			// A new must violation (a changed rule, an inventory showing
			// a VM where a rule forbids it) is reported at once, and in
			// automatic mode fixed by a round now.
			if b.checkRules(ctx) && b.d.Policy().Balancing.Mode == policy.BalanceAutomatic {
				return version
			}
		}
	}
}

// checkRules looks for VMs whose host breaks a must rule, at most once per
// applied index (a policy change, an inventory, a finished step). It sets the
// metric, logs each violation newly found as rules.violated, and reports
// whether there are any new ones.
func (b *Controller) checkRules(ctx context.Context) bool {
	doc := b.d.Policy()
	var found []balancing.Violation
	idx := b.d.State.Index()
	if idx == b.checkedAt {
		return false
	}
	b.checkedAt = idx
	b.d.State.Read(func(st *cluster.State) {
		found = balancing.MustViolations(st, nil, b.d.Compiled(doc, st))
	})
	b.d.Metrics.RuleViolations.Set(float64(len(found)))
	now := make(map[string]bool, len(found))
	var events []cluster.Event
	for _, v := range found {
		k := v.VM + "/" + v.Rule
		now[k] = true
		if !b.violated[k] {
			events = append(events, cluster.NewEvent("rules.violated", "balancer", v.Host, v.VM,
				fmt.Sprintf("VM %s on %s breaks must rule %s (%s)", v.Name, v.Host, v.Rule, v.Reason)))
		}
	}
	b.violated = now
	if len(events) == 0 {
		return false
	}
	if _, err := b.d.Raft.Apply(ctx, &cluster.AppendEvents{Events: events}); err != nil {
		b.d.Log.Warn("rule violations not logged", "err", err)
	}
	return true
}

// policyVersion is the version of the policy in force, 0 for none.
func (b *Controller) policyVersion() int {
	if p := b.d.State.Policy(); p != nil {
		return p.Version
	}
	return 0
}

// Plan plans with the policy in force, the moves in flight and, for the
// cpu metric, Prometheus.
func (b *Controller) Plan(ctx context.Context) *api.BalancePlan {
	d := b.d
	st := d.State.State()
	doc := d.Policy()
	in := balancing.Input{State: st, Ledger: d.Ledger.Reservations(), Policy: doc.Balancing,
		Options: d.Options(doc, st, 0), FailoverMin: doc.Failover.MinHostFailures,
		Moved: lastMoves(st), Now: time.Now(), Frozen: d.Frozen(st)}
	note := ""
	if doc.Balancing.Metric == policy.BalanceByCPU {
		cpu, err := d.HostCPU(ctx, doc.MetricSources.Prometheus, st)
		if err != nil {
			note = "cpu metric unavailable, balanced by memory: " + err.Error()
			b.noteMetricFallback(ctx, note)
			in.Policy.Metric = policy.BalanceByMemory
		} else {
			in.CPU = cpu
		}
	}
	plan := balancing.Compute(in)
	d.Metrics.BalanceImbalance.Set(plan.Before)
	d.Metrics.BalanceRecommended.Set(float64(len(plan.Moves)))
	d.Metrics.RuleViolations.Set(float64(len(plan.Violations)))
	out := &api.BalancePlan{Mode: doc.Balancing.Mode, Strategy: plan.Strategy, Metric: plan.Metric, Before: plan.Before, After: plan.After,
		SpreadBefore: plan.SpreadBefore, SpreadAfter: plan.SpreadAfter,
		Threshold: doc.Balancing.Threshold, Moves: []api.BalanceMove{}, EmptyHosts: plan.EmptyHosts, Reason: plan.Reason, Note: note, Time: time.Now().UTC()}
	for _, m := range plan.Moves {
		out.Moves = append(out.Moves, api.BalanceMove{VM: m.VM, Name: m.Name, From: m.From, To: m.To, MemoryBytes: m.MemoryBytes, Offline: m.Offline, Rule: m.Rule, Gain: m.Gain})
	}
	for _, v := range plan.Violations {
		out.Violations = append(out.Violations, api.RuleViolation(v))
	}
	balanceWindow(doc, out, d.Clock.Now())
	return out
}

// lastMoves is when each VM that balancing moved reached the host it is on
// (the hold keeps a round from undoing another). VMs an evacuation moved
// are not held: balancing may bring them back to a host that returned.
func lastMoves(st *cluster.State) map[string]time.Time {
	out := map[string]time.Time{}
	for _, op := range st.Operations {
		if op.Kind != cluster.OpBalance {
			continue
		}
		for _, it := range op.Items {
			if it.State != cluster.ItemDone || (it.Action != cluster.ActionLiveMigrate && it.Action != cluster.ActionOfflineMigrate) {
				continue
			}
			if vm := st.VMs[it.VM]; vm != nil && vm.Host == it.Target && it.Finished.After(out[it.VM]) {
				out[it.VM] = it.Finished
			}
		}
	}
	return out
}

// noteMetricFallback records, at most once a minute, that balancing fell
// back to memory.
func (b *Controller) noteMetricFallback(ctx context.Context, msg string) {
	b.fallbackMu.Lock()
	quiet := time.Since(b.lastFallback) < time.Minute
	if !quiet {
		b.lastFallback = time.Now()
	}
	b.fallbackMu.Unlock()
	b.d.Metrics.MetricSourceErrors.WithLabelValues("prometheus").Inc()
	if !quiet {
		b.d.Record(ctx, cluster.NewEvent("balance.metric_fallback", "balancer", "", "", msg))
	}
}

// Start records a plan's moves as one operation, for the operations
// controller to run; only one balance operation runs at a time. A plan
// that cannot start is refused with a *Refused.
func (b *Controller) Start(ctx context.Context, plan *api.BalancePlan, who string) (string, error) {
	st := b.d.State.State()
	for _, op := range st.Operations {
		if op.Kind == cluster.OpBalance && op.State == cluster.OpRunning {
			return "", &Refused{fmt.Sprintf("balance operation %s is still running", op.ID)}
		}
	}
	if len(plan.Moves) == 0 {
		return "", &Refused{"nothing to move: " + plan.Reason}
	}
	op := cluster.Operation{ID: b.d.NewOpID(), Kind: cluster.OpBalance, Actor: who, Created: time.Now().UTC(), Migrate: string(placement.MigrateActiveOnly)}
	for _, m := range plan.Moves {
		vm := st.VMs[m.VM]
		if vm == nil || vm.Host != m.From || b.d.Busy(st, vm.ID) != "" {
			continue
		}
		action := cluster.ActionLiveMigrate
		if m.Offline {
			action = cluster.ActionOfflineMigrate
			op.Migrate = string(placement.MigrateAll)
		}
		op.Items = append(op.Items, cluster.OpItem{VM: vm.ID, Name: vm.Name, Action: action, From: vm.Host,
			MemoryBytes: vm.MemoryBytes, Priority: vm.Priority, Planned: m.To})
	}
	if len(op.Items) == 0 {
		return "", &Refused{"the plan's VMs moved or are busy; plan again"}
	}
	ev := cluster.NewEvent("balance.started", who, "", "", fmt.Sprintf("balancing: %d moves (imbalance %.3f, planned %.3f): %s",
		len(op.Items), plan.Before, plan.After, movePairs(op.Items)))
	ev.Operation = op.ID
	if _, err := b.d.Raft.Apply(ctx, &cluster.StartOperation{Op: op, Event: ev}); err != nil {
		return "", err
	}
	b.d.Metrics.BalanceMoves.Add(float64(len(op.Items)))
	return op.ID, nil
}

// Refused is why a balance cannot start now (409).
type Refused struct{ msg string }

func (e *Refused) Error() string { return e.msg }

// movePairs names the hosts of the moves, "H1 → H3 (2), H2 → H4".
func movePairs(items []cluster.OpItem) string {
	var order []string
	n := map[string]int{}
	for _, it := range items {
		p := it.From + " → " + it.Planned
		if n[p] == 0 {
			order = append(order, p)
		}
		n[p]++
	}
	for i, p := range order {
		if n[p] > 1 {
			order[i] = fmt.Sprintf("%s (%d)", p, n[p])
		}
	}
	return strings.Join(order, ", ")
}
