package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/httpapi"
	"github.com/herd-project/herd/policy"
)

// balancer plans on the leader every balancing interval: in recommend mode
// it keeps the plan for people to read, in automatic mode it runs it as an
// operation through the same migration gate as maintenance. A new policy
// wakes it at once: a changed mode or interval takes effect now, not once
// the interval read before it has run out.
type balancer struct {
	s    *Server
	wake chan uint64 // applied raft indexes (see FSM.Watch)
	mu   sync.Mutex
	last *api.BalancePlan
	// violated holds the must-rule violations last reported (VM and
	// rule), checkedAt the index they were checked at.
	violated  map[string]bool
	checkedAt uint64
	// waitedFor is the window opening last logged as waited for.
	waitedFor time.Time
}

func newBalancerController(s *Server) *balancer {
	b := &balancer{s: s, wake: make(chan uint64, 1)}
	s.node.FSM().Watch(b.wake)
	return b
}

func (b *balancer) Name() string { return "balancer" }

func (b *balancer) Run(ctx context.Context) {
	version := b.policyVersion()
	b.violated, b.checkedAt = nil, 0 // a new leader reports what it finds
	for ctx.Err() == nil {
		bp := b.s.Policy().Balancing
		b.checkRules(ctx)
		interval := bp.Interval
		if bp.Mode != policy.BalanceOff {
			plan := b.s.planBalance(ctx)
			b.mu.Lock()
			b.last = plan
			b.mu.Unlock()
			inWindow := plan.Window == nil || plan.Window.Open
			if bp.Mode == policy.BalanceAutomatic && len(plan.Moves) > 0 && !inWindow {
				b.noteWindowWait(ctx, plan.Window)
			} else if bp.Mode == policy.BalanceAutomatic && len(plan.Moves) > 0 {
				if _, err := b.s.startBalance(ctx, plan, "balancer"); err != nil {
					b.s.log.Info("automatic balancing did not start", "reason", err)
				}
			}
			interval = untilWindow(interval, plan.Window, b.s.clock.Now())
		}
		version = b.sleep(ctx, interval, version)
	}
}

// sleep waits for interval, or until the policy in force is no longer
// version; it returns the version in force then.
func (b *balancer) sleep(ctx context.Context, interval time.Duration, version int) int {
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
			if b.checkRules(ctx) && b.s.Policy().Balancing.Mode == policy.BalanceAutomatic {
				return version
			}
		}
	}
}

// checkRules looks for VMs whose host breaks a must rule, at most once per
// applied index (a policy change, an inventory, a finished step). It sets the
// metric, logs each violation newly found as rules.violated, and reports
// whether there are any new ones.
func (b *balancer) checkRules(ctx context.Context) bool {
	doc := b.s.Policy()
	var found []policy.Violation
	idx := b.s.node.FSM().Index()
	if idx == b.checkedAt {
		return false
	}
	b.checkedAt = idx
	b.s.node.FSM().Read(func(st *cluster.State) {
		found = policy.MustViolations(st, nil, b.s.compiled(doc, st))
	})
	b.s.metrics.RuleViolations.Set(float64(len(found)))
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
	if _, err := b.s.node.Apply(ctx, &cluster.AppendEvents{Events: events}); err != nil {
		b.s.log.Warn("rule violations not logged", "err", err)
	}
	return true
}

// policyVersion is the version of the policy in force, 0 for none.
func (b *balancer) policyVersion() int {
	if p := b.s.node.FSM().Policy(); p != nil {
		return p.Version
	}
	return 0
}

// planBalance plans with the policy in force, the moves in flight and,
// for the cpu metric, Prometheus.
func (s *Server) planBalance(ctx context.Context) *api.BalancePlan {
	st := s.node.FSM().State()
	doc := s.Policy()
	in := policy.BalanceInput{State: st, Ledger: s.ops.Reservations(), Policy: doc.Balancing,
		Options: s.placementOptions(doc, st, 0), FailoverMin: doc.Failover.MinHostFailures,
		Moved: lastMoves(st), Now: time.Now(), Frozen: frozenHosts(st)}
	note := ""
	if doc.Balancing.Metric == policy.BalanceByCPU {
		cpu, err := s.hostCPU(ctx, doc.MetricSources.Prometheus, st)
		if err != nil {
			note = "cpu metric unavailable, balanced by memory: " + err.Error()
			s.noteMetricFallback(ctx, note)
			in.Policy.Metric = policy.BalanceByMemory
		} else {
			in.CPU = cpu
		}
	}
	plan := policy.PlanBalance(in)
	s.metrics.BalanceImbalance.Set(plan.Before)
	s.metrics.BalanceRecommended.Set(float64(len(plan.Moves)))
	s.metrics.RuleViolations.Set(float64(len(plan.Violations)))
	out := &api.BalancePlan{Mode: doc.Balancing.Mode, Strategy: plan.Strategy, Metric: plan.Metric, Before: plan.Before, After: plan.After,
		SpreadBefore: plan.SpreadBefore, SpreadAfter: plan.SpreadAfter,
		Threshold: doc.Balancing.Threshold, Moves: []api.BalanceMove{}, EmptyHosts: plan.EmptyHosts, Reason: plan.Reason, Note: note, Time: time.Now().UTC()}
	for _, m := range plan.Moves {
		out.Moves = append(out.Moves, api.BalanceMove{VM: m.VM, Name: m.Name, From: m.From, To: m.To, MemoryBytes: m.MemoryBytes, Offline: m.Offline, Rule: m.Rule, Gain: m.Gain})
	}
	for _, v := range plan.Violations {
		out.Violations = append(out.Violations, api.RuleViolation(v))
	}
	balanceWindow(doc, out, s.clock.Now())
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

// frozenHosts are the hosts of the driver groups where an evacuation or a
// recovery is under way: its VMs land on any of them, so balancing there
// would move VMs the operation just placed.
func frozenHosts(st *cluster.State) map[string]string {
	out := map[string]string{}
	for _, op := range runningOps(st) {
		if op.Kind != cluster.OpEvacuate && op.Kind != cluster.OpRecover || op.Kind == cluster.OpRecover && !placesVMs(op) {
			continue
		}
		src := st.Hosts[op.Host]
		if src == nil {
			continue
		}
		why := fmt.Sprintf("%s %s of host %s under way", op.Kind, op.ID, op.Host)
		for name, h := range st.Hosts {
			if _, seen := out[name]; !seen && h.Driver == src.Driver && h.Group == src.Group {
				out[name] = why
			}
		}
	}
	return out
}

// noteMetricFallback records, at most once a minute, that balancing fell
// back to memory.
func (s *Server) noteMetricFallback(ctx context.Context, msg string) {
	s.fallbackMu.Lock()
	quiet := time.Since(s.lastFallback) < time.Minute
	if !quiet {
		s.lastFallback = time.Now()
	}
	s.fallbackMu.Unlock()
	s.metrics.MetricSourceErrors.WithLabelValues("prometheus").Inc()
	if !quiet {
		s.recordEvent(ctx, cluster.NewEvent("balance.metric_fallback", "balancer", "", "", msg))
	}
}

// startBalance runs a plan's moves as one operation; only one balance
// operation runs at a time.
func (s *Server) startBalance(ctx context.Context, plan *api.BalancePlan, who string) (string, error) {
	st := s.node.FSM().State()
	for _, op := range st.Operations {
		if op.Kind == cluster.OpBalance && op.State == cluster.OpRunning {
			return "", &balanceRefused{fmt.Sprintf("balance operation %s is still running", op.ID)}
		}
	}
	if len(plan.Moves) == 0 {
		return "", &balanceRefused{"nothing to move: " + plan.Reason}
	}
	op := cluster.Operation{ID: newOpID(), Kind: cluster.OpBalance, Actor: who, Created: time.Now().UTC(), Migrate: string(policy.MigrateActiveOnly)}
	for _, m := range plan.Moves {
		vm := st.VMs[m.VM]
		if vm == nil || vm.Host != m.From || vmBusy(st, vm.ID) != "" {
			continue
		}
		action := cluster.ActionLiveMigrate
		if m.Offline {
			action = cluster.ActionOfflineMigrate
			op.Migrate = string(policy.MigrateAll)
		}
		op.Items = append(op.Items, cluster.OpItem{VM: vm.ID, Name: vm.Name, Action: action, From: vm.Host,
			MemoryBytes: vm.MemoryBytes, Priority: vm.Priority, Planned: m.To})
	}
	if len(op.Items) == 0 {
		return "", &balanceRefused{"the plan's VMs moved or are busy; plan again"}
	}
	ev := cluster.NewEvent("balance.started", who, "", "", fmt.Sprintf("balancing: %d moves (imbalance %.3f, planned %.3f): %s",
		len(op.Items), plan.Before, plan.After, movePairs(op.Items)))
	ev.Operation = op.ID
	if _, err := s.node.Apply(ctx, &cluster.StartOperation{Op: op, Event: ev}); err != nil {
		return "", err
	}
	s.metrics.BalanceMoves.Add(float64(len(op.Items)))
	return op.ID, nil
}

func (s *Server) handleBalancePlan(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.planBalance(r.Context()), nil
}

func (s *Server) handleBalanceApply(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := httpapi.DecodeEmpty(r); err != nil {
		return nil, err
	}
	plan := s.planBalance(r.Context())
	id, err := s.startBalance(r.Context(), plan, httpapi.Actor(r))
	var refused *balanceRefused
	switch {
	case errors.As(err, &refused):
		return nil, httpapi.Errorf(http.StatusConflict, "", "%v", err)
	case err != nil:
		return nil, httpapi.ApplyFailed(err)
	}
	return httpapi.Accepted(api.OperationRef{Operation: id}), nil
}

// balanceRefused is why a balance cannot start now (409).
type balanceRefused struct{ msg string }

func (e *balanceRefused) Error() string { return e.msg }

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
