// Package ops is the leader's operations controller: it runs the
// operations recorded in raft (evacuations, exits, migrations, balance
// runs, the recreations of recoveries) step by step, and it is the one
// migration gate: every move goes through its ledger and limits. Each step
// is decided under its lock and written to raft after the lock is
// released, before it acts and after; a new leader checks the steps it
// finds running against the hypervisor and never repeats a finished one.
package ops

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/placement"
	"github.com/herd-project/herd/policy/plan"
)

// controllerActor names the controllers in events.
const controllerActor = "herd"

// Controller runs operations (evacuations, exits, migrations) on the
// leader. It is the one migration gate: every move goes through its ledger
// and limits. Each step is written to raft before it acts and after.
type Controller struct {
	d    Deps
	wake chan uint64

	mu       sync.Mutex
	ledger   *placement.Ledger
	inflight map[string]bool // op/vm
	// waiting is when each step (op/vm) began waiting for the connection
	// to its source host (sourceGate).
	waiting map[string]time.Time
	// recovering counts the recreations in flight (recovery.concurrency).
	recovering int
	wg         sync.WaitGroup
}

// New is the operations controller; it wakes on every raft entry.
func New(d Deps) *Controller {
	if d.Clock == nil {
		d.Clock = systemClock{}
	}
	c := &Controller{
		d:        d,
		wake:     make(chan uint64, 1),
		ledger:   placement.NewLedger(),
		inflight: map[string]bool{},
		waiting:  map[string]time.Time{},
	}
	d.State.Watch(c.wake)
	return c
}

// Name names the controller in logs.
func (c *Controller) Name() string { return "operations" }

// settings are the policy's maintenance section and the placement options
// for automatic moves, as in force now.
func (c *Controller) settings(st *cluster.State) (policy.MaintenancePolicy, placement.Limits, placement.Options) {
	doc := c.d.Policy()
	m := doc.Maintenance
	limits := placement.Limits{PerSource: m.PerSource, PerTarget: m.PerTarget, Cluster: m.Cluster}
	return m, limits, c.d.Options(doc, st, limits.PerTarget)
}

// options are the placement options for automatic moves.
func (c *Controller) options(st *cluster.State) placement.Options {
	_, _, o := c.settings(st)
	return o
}

// Planning is what a precheck (or an operator's move) plans with: the
// ledger as it will be, the steps in flight plus room for the steps the
// running evacuations still have to run (several hosts entering
// maintenance at once share one capacity), and the placement options of
// automatic moves. Both are copies the caller may change.
func (c *Controller) Planning(st *cluster.State) (*placement.Ledger, placement.Options) {
	l := c.Reservations()
	usage := st.Usage()
	opts := c.options(st)
	o := opts
	o.MaxInFlightTo = 0
	for _, op := range Running(st) {
		for _, it := range op.Items {
			if it.State != cluster.ItemPending || (it.Action != cluster.ActionLiveMigrate && it.Action != cluster.ActionOfflineMigrate) {
				continue
			}
			vm := st.VMs[it.VM]
			if vm == nil {
				continue
			}
			if _, moving := l.Move(vm.ID); moving {
				continue
			}
			req := placement.EvacuationRequest{Host: vm.Host, TargetHost: op.TargetHost}
			if pl := placement.NextTarget(st, usage, l, vm, req, nil, o); pl.Host != "" {
				need := vm.MemoryBytes
				if it.Action == cluster.ActionOfflineMigrate {
					need = 0
				}
				l.Reserve(vm.ID, vm.Host, pl.Host, need)
			}
		}
	}
	return l, opts
}

// Reservations is a copy of the steps in flight's reservations.
func (c *Controller) Reservations() *placement.Ledger {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ledger.Clone()
}

// InFlight is how many steps are running now.
func (c *Controller) InFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.inflight)
}

// Run runs the operations until ctx ends (leadership lost); the steps in
// flight are left to the next leader, which checks them.
func (c *Controller) Run(ctx context.Context) {
	c.mu.Lock()
	c.ledger, c.inflight, c.recovering, c.waiting = placement.NewLedger(), map[string]bool{}, 0, map[string]time.Time{}
	c.mu.Unlock()
	c.resume(ctx)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		c.step(ctx)
		select {
		case <-ctx.Done():
			c.wg.Wait()
			return
		case <-tick.C:
		case <-c.wake:
		}
	}
}

func key(op, vm string) string { return op + "/" + vm }

// resume takes over the steps a previous leader had in flight: each is
// checked against the hypervisor. A step that finished is recorded as done;
// one that did not is driven again toward the same target, so no VM goes
// to two places.
func (c *Controller) resume(ctx context.Context) {
	st := c.d.State.State()
	invs := map[string]*drivers.Inventory{}
	for _, op := range st.SortedOperations() {
		if op.State != cluster.OpRunning {
			continue
		}
		inFlight := 0
		for _, it := range op.Items {
			if it.State == cluster.ItemRunning {
				inFlight++
			}
		}
		c.apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{opEvent(op, "operation.resumed", "",
			"leader %s took over %s operation %s on %s (steps in flight: %d, each checked against the hypervisor)", c.d.Self, op.Kind, op.ID, op.Host, inFlight)}})
		for _, it := range op.Items {
			if it.State != cluster.ItemRunning {
				continue
			}
			vm := st.VMs[it.VM]
			if vm == nil {
				c.finish(ctx, op, it, errors.New("VM no longer exists"), "")
				continue
			}
			inv, ok := invs[vm.Driver]
			if !ok {
				inv = c.inventory(ctx, vm.Driver)
				invs[vm.Driver] = inv
			}
			if inv == nil {
				// Driver unreachable: drive it again; the driver call fails
				// or succeeds on its own.
				c.launch(ctx, op, it, vm)
				continue
			}
			if isRecovery(it.Action) {
				if found := findRecreated(inv, st, vm, it.Target); found != nil {
					c.d.Log.Info("resumed recreation had finished", "op", op.ID, "vm", vm.Name, "copy", found.ID)
					it.NewID = found.ID
					if it.Action == cluster.ActionRecreate && found.Power != drivers.PoweredOn {
						c.launch(ctx, op, it, vm) // defined but not started: drive it again
						continue
					}
					c.finish(ctx, op, it, nil, "found recreated after a leader change")
					continue
				}
				c.launch(ctx, op, it, vm)
				continue
			}
			switch resumeVerdict(it, inv.Copies(vm.ID)) {
			case resumeGone:
				c.finish(ctx, op, it, errors.New("VM no longer exists"), "")
			case resumeDone:
				c.d.Log.Info("resumed step had finished", "op", op.ID, "vm", vm.Name, "action", it.Action)
				c.finish(ctx, op, it, nil, "found finished after a leader change")
			default:
				c.d.Log.Info("resuming step", "op", op.ID, "vm", vm.Name, "action", it.Action, "target", it.Target)
				c.launch(ctx, op, it, vm)
			}
		}
	}
}

func (c *Controller) inventory(ctx context.Context, driver string) *drivers.Inventory {
	d, err := c.d.Drivers.Get(ctx, driver)
	if err != nil {
		return nil
	}
	tctx, cancel := context.WithTimeout(ctx, c.d.InventoryTimeout)
	defer cancel()
	inv, err := d.Inventory(tctx)
	if err != nil {
		return nil
	}
	return inv
}

// isRecovery reports whether an action recreates a VM of a fenced host.
func isRecovery(action string) bool {
	return action == cluster.ActionRecreate || action == cluster.ActionRegister || action == cluster.ActionAwaitHost
}

// findRecreated looks on target for the copy a previous leader recreated
// of vm before it could record it: the same id on another host than the
// fenced one (identity is kept), or — for a driver that gave it a new id —
// the same name (or the name with the -rN suffix a taken name gets) under
// an id Herd does not know otherwise.
func findRecreated(inv *drivers.Inventory, st *cluster.State, vm *cluster.VM, target string) *drivers.VM {
	for i := range inv.VMs {
		v := &inv.VMs[i]
		if (target != "" && v.Host != target) || v.Host == vm.Host {
			continue
		}
		if v.ID == vm.ID {
			return v
		}
		if v.Name != vm.Name && !strings.HasPrefix(v.Name, vm.Name+"-r") {
			continue
		}
		if known := st.VMs[v.ID]; known != nil && known.RecreatedFrom != vm.ID {
			continue
		}
		return v
	}
	return nil
}

// resumeAction is what a new leader does with a step it found running.
type resumeAction int

const (
	resumeAgain resumeAction = iota // drive it again, toward the same target
	resumeDone                      // the hypervisor shows it finished
	resumeGone                      // the VM is on no host
)

// resumeVerdict decides from the VM's copies in the inventory. A VM on two
// hosts is in the middle of a live migration the previous leader started:
// it is driven again, and the driver waits for that migration to end.
func resumeVerdict(it cluster.OpItem, copies []drivers.VM) resumeAction {
	switch {
	case len(copies) == 0:
		return resumeGone
	case len(copies) == 1 && stepDone(it, &copies[0]):
		return resumeDone
	}
	return resumeAgain
}

// stepDone reports whether the hypervisor already shows the step's result,
// vm being the VM's only copy. A live migration is done when the VM runs
// on the target: a paused copy there may be an incoming one.
func stepDone(it cluster.OpItem, vm *drivers.VM) bool {
	switch it.Action {
	case cluster.ActionLiveMigrate:
		return it.Target != "" && vm.Host == it.Target && vm.Power == drivers.PoweredOn
	case cluster.ActionOfflineMigrate:
		return it.Target != "" && vm.Host == it.Target
	case cluster.ActionShutdown:
		return vm.Power == drivers.PoweredOff
	case cluster.ActionPowerOn:
		return vm.Power == drivers.PoweredOn
	}
	return false
}

// step starts whatever the limits allow now.
func (c *Controller) step(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	// Most ticks find nothing running: look before copying the state.
	running := false
	c.d.State.Read(func(st *cluster.State) {
		for _, op := range st.Operations {
			if op.State == cluster.OpRunning {
				running = true
				return
			}
		}
	})
	if !running {
		return
	}
	st := c.d.State.State()
	ops := Running(st)
	if len(ops) == 0 {
		return
	}
	usage := st.Usage()
	now := c.now()
	m, limits, opts := c.settings(st)
	rec := c.d.Policy().Recovery
	// Each step is decided under c.mu (the ledger, the steps in flight)
	// and written to raft after it is released: a reader of the ledger or
	// of InFlight (a precheck, /metrics) never waits for a commit.
	// Recoveries go first: their VMs are down.
	sort.SliceStable(ops, func(i, j int) bool {
		return ops[i].Kind == cluster.OpRecover && ops[j].Kind != cluster.OpRecover
	})
	for _, op := range ops {
		if op.Cancelled {
			continue
		}
		if op.Kind == cluster.OpRecover {
			c.stepRecovery(ctx, st, usage, op, now, rec, opts)
			continue
		}
		if d := m.NoProgressTimeout; now.Sub(op.Progress) > d {
			msg := fmt.Sprintf("no VM finished for %s (no_progress_timeout)", d)
			c.apply(ctx, &cluster.FailOperation{Op: op.ID, Error: msg, Time: now,
				Event: opEvent(op, "operation.stalled", "", "operation %s failed: %s", op.ID, msg)})
			continue
		}
		view := st
		if op.Kind == cluster.OpExit {
			view = openedForExit(st, op.Host)
		}
		for _, it := range op.Items {
			if it.State != cluster.ItemPending {
				continue
			}
			if it.Attempts > 0 && now.Before(it.Finished.Add(m.RetryBackoff)) {
				continue
			}
			c.mu.Lock()
			if c.inflight[key(op.ID, it.VM)] {
				c.mu.Unlock()
				continue
			}
			if c.ledger.Total() >= limits.Cluster {
				c.mu.Unlock()
				return
			}
			act := c.decide(view, usage, op, it, now, limits, opts)
			c.mu.Unlock()
			if !act(ctx) {
				return
			}
		}
	}
}

// stepRecovery starts the pending recreations of one recovery, in order,
// within recovery.concurrency. A recovery never gives up: a VM that found
// no host is tried again after a backoff that doubles up to max_backoff.
func (c *Controller) stepRecovery(ctx context.Context, st *cluster.State, usage map[string]cluster.HostUsage, op *cluster.Operation, now time.Time, r policy.RecoveryPolicy, o placement.Options) {
	// The failover hosts are kept for this: tried first.
	o = plan.RecoveryOptions(o)
	c.mu.Lock()
	due := plan.DueRecoveries(op.Items, func(it cluster.OpItem) bool { return c.inflight[key(op.ID, it.VM)] }, now, r)
	c.mu.Unlock()
	for _, it := range due {
		c.mu.Lock()
		if c.recovering >= r.Concurrency {
			c.mu.Unlock()
			return
		}
		act := c.decide(st, usage, op, it, now, placement.Limits{}, o)
		c.mu.Unlock()
		if !act(ctx) {
			return
		}
	}
}

// action is what a decision taken under c.mu leaves to do once c.mu is
// released: the raft writes, and starting the driver call. It returns false
// when writing to raft failed (leadership is probably gone).
type action func(ctx context.Context) bool

// wait is the action of a step that cannot start now.
func wait(context.Context) bool { return true }

// finishAtOnce is the action of a step that needs no driver call: it is
// done (err nil) or failed at once (counted as an attempt).
func (c *Controller) finishAtOnce(op *cluster.Operation, it cluster.OpItem, target string, err error, note string) action {
	return func(ctx context.Context) bool { return c.startAndFinish(ctx, op, it, target, err, note) }
}

// decide chooses how one pending step starts (c.mu held): its target is
// reserved in the ledger at once, so the next decision counts it.
func (c *Controller) decide(st *cluster.State, usage map[string]cluster.HostUsage, op *cluster.Operation, it cluster.OpItem, now time.Time, limits placement.Limits, o placement.Options) action {
	vm := st.VMs[it.VM]
	if vm == nil {
		return c.finishAtOnce(op, it, "", nil, "VM no longer exists; nothing to do")
	}
	target := ""
	switch it.Action {
	case cluster.ActionRecreate, cluster.ActionRegister, cluster.ActionAwaitHost:
		if h := st.Hosts[vm.Host]; h != nil && h.Health != cluster.HealthFenced && h.Health != cluster.HealthDead {
			return c.backOnItsHost(st, op, it, vm, h)
		}
		if it.Action == cluster.ActionAwaitHost {
			return wait // it waits for its host
		}
		if vm.Definition.IsZero() {
			return c.finishAtOnce(op, it, "", errors.New("no stored definition to recreate it from"), "")
		}
		if it.NewID != "" && it.Target != "" {
			// A copy was defined there by an attempt that could not start
			// it: start that one, never define a second.
			target = it.Target
			break
		}
		// Placed as herd simulate failure predicts it.
		pl := plan.PlaceRecovered(st, usage, c.ledger, vm, it.Tried, o)
		if pl.Host == "" {
			if pl.Transient() {
				return wait
			}
			return c.finishAtOnce(op, it, "", fmt.Errorf("no host can take it: %s", pl.Explain()), "")
		}
		target = pl.Host
	case cluster.ActionLiveMigrate, cluster.ActionOfflineMigrate:
		if op.Kind == cluster.OpEvacuate && vm.Host != op.Host {
			return c.finishAtOnce(op, it, vm.Host, nil, "VM already left the host (now on "+vm.Host+")")
		}
		if op.TargetHost != "" && vm.Host == op.TargetHost {
			return c.finishAtOnce(op, it, vm.Host, nil, "VM already on "+vm.Host)
		}
		if vm.Power == cluster.PoweredOn && it.Action == cluster.ActionOfflineMigrate ||
			vm.Power != cluster.PoweredOn && it.Action == cluster.ActionLiveMigrate {
			return c.finishAtOnce(op, it, "", fmt.Errorf("VM is %s now; cannot %s", vm.Power, it.Action), "")
		}
		if act := c.sourceGate(st, op, it, vm, now); act != nil {
			return act
		}
		// A move to a host the operator named (or a move back on exit) may
		// go to a NOT_ACCEPTING host; the others (evacuation, balancing, an
		// operator's move to a host Herd chose) never.
		if op.Kind == cluster.OpMigrate && op.TargetHost != "" || op.Kind == cluster.OpExit {
			o.AllowNotAccepting = true
		}
		// Failover hosts take no automatic placements, only a host the
		// operator named (or a move back on exit).
		if op.TargetHost != "" || op.Kind == cluster.OpExit {
			o.Reserved = nil
		}
		req := placement.EvacuationRequest{Host: vm.Host, TargetHost: op.TargetHost, Migrate: placement.MigrateMode(op.Migrate)}
		var pl placement.Placement
		if it.Planned != "" && len(it.Tried) == 0 {
			// A planned move goes where it was planned while that still fits.
			pl = placement.PlaceOn(st, usage, c.ledger, vm, it.Planned, o)
			if pl.Host == "" && !pl.Transient() {
				pl = placement.NextTarget(st, usage, c.ledger, vm, req, it.Tried, o)
			}
		} else {
			pl = placement.NextTarget(st, usage, c.ledger, vm, req, it.Tried, o)
		}
		if pl.Host == "" {
			if pl.Transient() {
				return wait // for a slot
			}
			return c.finishAtOnce(op, it, "", errors.New(pl.Explain()), "")
		}
		if !limits.Allow(c.ledger, vm.Host, pl.Host) {
			return wait
		}
		target = pl.Host
	}
	attempt := it.Attempts + 1
	msg := fmt.Sprintf("%s VM %s (%d MiB) on %s, attempt %d of %d", it.Action, vm.Name, vm.MemoryBytes>>20, vm.Host, attempt, op.Attempts())
	switch {
	case isRecovery(it.Action):
		msg = fmt.Sprintf("%s VM %s (%d MiB, priority %d) of fenced host %s on %s, attempt %d", it.Action, vm.Name, vm.MemoryBytes>>20, it.Priority, vm.Host, target, attempt)
	case target != "":
		msg = fmt.Sprintf("%s VM %s (%d MiB) from %s to %s, attempt %d of %d", it.Action, vm.Name, vm.MemoryBytes>>20, vm.Host, target, attempt, op.Attempts())
	}
	start := &cluster.StartItem{Op: op.ID, VM: it.VM, Target: target, Time: now, Event: stepEvent(op, it, vm.Host, target, "step.started", "%s", msg)}
	it.Target, it.Attempts = target, attempt
	return c.startLocked(op, it, vm, start)
}

// startLocked reserves a step's target and marks it in flight (c.mu held);
// its action records the start in raft and runs the driver call, or gives
// the reservation back when the start was not recorded: not committed, or
// refused by the state machine (the operation was cancelled meanwhile) —
// nothing acts on a step raft does not show as started.
func (c *Controller) startLocked(op *cluster.Operation, it cluster.OpItem, vm *cluster.VM, start *cluster.StartItem) action {
	c.reserveLocked(op, it, vm)
	if sub, ok := c.d.Raft.(submitter); ok && isRecovery(it.Action) {
		return c.startAside(sub, op, it, vm, start)
	}
	return func(ctx context.Context) bool {
		if _, err := c.d.Raft.Apply(ctx, start); err != nil {
			c.release(op, it, vm)
			return c.applied(err)
		}
		c.run(ctx, op, it, vm)
		return true
	}
}

// backOnItsHost ends the recovery step of a VM whose only copy is on its
// own host, which answers again (its recreation was blocked, or the policy
// excludes it): it gets back the power state it had before the crash
// there — as soon as that is safe: the host is alive and connected, and
// the stale copies of other VMs on it are gone.
func (c *Controller) backOnItsHost(st *cluster.State, op *cluster.Operation, it cluster.OpItem, vm *cluster.VM, h *cluster.Host) action {
	if h.Health != cluster.HealthAlive || h.Connection != cluster.Connected || len(st.StaleOn(h.Name)) > 0 {
		return wait
	}
	wasRunning := it.Action == cluster.ActionRecreate || (it.Action == cluster.ActionAwaitHost && it.WasRunning)
	why := "its recovery elsewhere was blocked"
	if it.Error != "" {
		why += " (" + it.Error + ")"
	}
	if it.Action == cluster.ActionAwaitHost {
		why = "it is excluded from recovery elsewhere (recovery.exclude_vm_groups)"
	}
	if !wasRunning || vm.Power == cluster.PoweredOn {
		return c.finishAtOnce(op, it, h.Name, nil, fmt.Sprintf("VM %s is on its host %s again, which returned, and is %s as before the crash: %s", vm.Name, h.Name, vm.Power, why))
	}
	now := c.now()
	msg := fmt.Sprintf("power on VM %s on its host %s, which returned: it ran before the crash, and %s", vm.Name, h.Name, why)
	start := &cluster.StartItem{Op: op.ID, VM: it.VM, Target: h.Name, Time: now, Event: opEvent(op, "step.started", vm.ID, "%s", msg)}
	it.Target, it.Attempts = h.Name, it.Attempts+1
	return c.startLocked(op, it, vm, start)
}

// startAndFinish records a step that needs no driver call: it is done (err
// nil) or failed at once (counted as an attempt).
func (c *Controller) startAndFinish(ctx context.Context, op *cluster.Operation, it cluster.OpItem, target string, err error, note string) bool {
	now := c.now()
	if !c.apply(ctx, &cluster.StartItem{Op: op.ID, VM: it.VM, Target: target, Time: now}) {
		return false
	}
	it.Target, it.Attempts = target, it.Attempts+1
	return c.finish(ctx, op, it, err, note)
}

// migrationKind is how a step moves its VM.
func migrationKind(it cluster.OpItem) drivers.MigrationKind {
	if it.Action == cluster.ActionOfflineMigrate || it.Action == cluster.ActionRegister {
		return drivers.Offline
	}
	return drivers.Live
}

// reserveLocked marks a step in flight and holds its target's capacity in
// the ledger (c.mu held).
func (c *Controller) reserveLocked(op *cluster.Operation, it cluster.OpItem, vm *cluster.VM) {
	c.inflight[key(op.ID, it.VM)] = true
	if isRecovery(it.Action) {
		c.recovering++
	}
	if it.Target != "" {
		need := vm.MemoryBytes
		switch {
		case isRecovery(it.Action):
			need = plan.RecoveryReserve(it.Action, vm)
		case migrationKind(it) == drivers.Offline:
			need = 0
		}
		c.ledger.Reserve(vm.ID, vm.Host, it.Target, need)
	}
}

// release ends what reserveLocked began.
func (c *Controller) release(op *cluster.Operation, it cluster.OpItem, vm *cluster.VM) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, key(op.ID, it.VM))
	c.ledger.Release(vm.ID)
	if isRecovery(it.Action) {
		c.recovering--
	}
}

// launch drives a step already recorded as running (a resumed one).
func (c *Controller) launch(ctx context.Context, op *cluster.Operation, it cluster.OpItem, vm *cluster.VM) {
	c.mu.Lock()
	c.reserveLocked(op, it, vm)
	c.mu.Unlock()
	c.run(ctx, op, it, vm)
}

// run makes one step's driver call in the background; its reservation in
// the ledger is held until the result is committed.
func (c *Controller) run(ctx context.Context, op *cluster.Operation, it cluster.OpItem, vm *cluster.VM) {
	kind := migrationKind(it)
	recovery := isRecovery(it.Action)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		start := time.Now()
		err := c.drive(ctx, &it, vm, kind)
		note := ""
		if err != nil && !recovery && it.Target != "" && ctx.Err() == nil {
			err, note = c.afterFailure(ctx, op, it, vm, err)
		}
		switch {
		case recovery:
			result := "ok"
			if err != nil {
				result = "error"
			}
			c.d.Metrics.Recreations.WithLabelValues(result).Inc()
		case it.Target != "":
			result := "ok"
			if err != nil {
				result = "error"
			}
			c.d.Metrics.Migrations.WithLabelValues(string(kind), result).Inc()
			if err == nil {
				c.d.Metrics.MigrationDuration.WithLabelValues(string(kind)).Observe(time.Since(start).Seconds())
			}
		}
		if ctx.Err() == nil {
			if note != "" {
				note = ", " + note
			}
			c.finish(ctx, op, it, err, fmt.Sprintf("in %.1fs%s", time.Since(start).Seconds(), note))
		}
		// Leadership lost: the next leader checks this step and resumes it.
		c.release(op, it, vm)
		if ctx.Err() != nil {
			return
		}
		select {
		case c.wake <- 0:
		default:
		}
	}()
}

// drive makes the driver call for one step.
func (c *Controller) drive(ctx context.Context, it *cluster.OpItem, vm *cluster.VM, kind drivers.MigrationKind) error {
	d, err := c.d.Drivers.Get(ctx, vm.Driver)
	if err != nil {
		return err
	}
	m := c.d.Policy().Maintenance
	switch it.Action {
	case cluster.ActionRecreate, cluster.ActionRegister, cluster.ActionAwaitHost:
		return c.recreate(ctx, d, it, vm)
	case cluster.ActionLiveMigrate, cluster.ActionOfflineMigrate:
		tctx, cancel := context.WithTimeout(ctx, m.MigrationTimeout)
		defer cancel()
		err = d.Migrate(tctx, vm.ID, it.Target, kind)
		if err != nil && ctx.Err() == nil {
			// A failed call may still have moved the VM (a task that
			// finished after a time-out): believe the hypervisor when it
			// shows one copy, on the target, done.
			if inv := c.inventory(ctx, vm.Driver); inv != nil {
				if resumeVerdict(*it, inv.Copies(vm.ID)) == resumeDone {
					return nil
				}
			}
		}
		return err
	case cluster.ActionShutdown:
		tctx, cancel := context.WithTimeout(ctx, m.ShutdownTimeout)
		defer cancel()
		return d.Shutdown(tctx, vm.ID)
	case cluster.ActionPowerOn:
		tctx, cancel := context.WithTimeout(ctx, m.MigrationTimeout)
		defer cancel()
		return d.PowerOn(tctx, vm.ID)
	}
	return fmt.Errorf("unknown action %q", it.Action)
}

// targetProbeTimeout bounds the probe of a failed step's target.
const targetProbeTimeout = 5 * time.Second

// targetLostError is a step's failure whose target host was lost during
// it: the failure is the host's, not the VM's (cluster.FinishItem).
type targetLostError struct {
	host string
	err  error
}

func (e *targetLostError) Error() string {
	return fmt.Sprintf("%v (target %s was lost)", e.err, e.host)
}

func (e *targetLostError) Unwrap() error { return e.err }

// targetLost reports whether a failed step's target host was lost: Herd no
// longer sees it alive and connected, or its manager does not answer a
// probe now (a crash shows there first: health takes suspect_after).
func (c *Controller) targetLost(ctx context.Context, vm *cluster.VM, target string) bool {
	var h *cluster.Host
	c.d.State.Read(func(st *cluster.State) { h = st.Hosts[target] })
	if h == nil {
		return true
	}
	if h.Health == cluster.HealthSuspect || h.Health == cluster.HealthDead || h.Health == cluster.HealthFenced || h.Connection == cluster.Disconnected || h.Connection == cluster.NotResponding {
		return true
	}
	d, err := c.d.Drivers.Get(ctx, vm.Driver)
	if err != nil {
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, targetProbeTimeout)
	defer cancel()
	conn, err := d.ProbeHost(pctx, target)
	if ctx.Err() != nil {
		return false
	}
	return err != nil || conn != drivers.Connected
}

// recreateTimeout bounds defining and starting one recreated VM.
const recreateTimeout = 2 * time.Minute

// recreate defines vm on the item's target from its stored definition and,
// for a VM that ran, starts it. A step that already has its copy (NewID:
// an attempt that could not start it, or a resumed step) only starts it.
func (c *Controller) recreate(ctx context.Context, d drivers.Driver, it *cluster.OpItem, vm *cluster.VM) error {
	tctx, cancel := context.WithTimeout(ctx, recreateTimeout)
	defer cancel()
	if it.Target == it.From && it.From != "" {
		// Its own host returned: the VM is started where it is.
		if err := powerOnAt(tctx, d, vm.ID, it.Target); err != nil {
			return fmt.Errorf("start %s on its host %s: %w", vm.Name, it.Target, err)
		}
		return nil
	}
	if it.NewID == "" {
		c.removeEarlierCopies(tctx, d, it, vm)
		def, err := vm.Definition.Bytes()
		if err != nil {
			return fmt.Errorf("recreate %s: stored definition: %w", vm.Name, err)
		}
		id, err := d.Recreate(tctx, def, it.Target)
		if err != nil {
			return fmt.Errorf("recreate %s on %s: %w", vm.Name, it.Target, err)
		}
		it.NewID = id
	}
	if it.Action != cluster.ActionRecreate {
		return nil
	}
	if err := powerOnAt(tctx, d, it.NewID, it.Target); err != nil {
		// The copy stays defined (it may even have started after a
		// time-out): the next attempt starts this one, so there is never a
		// second copy.
		return fmt.Errorf("start recreated %s (%s) on %s: %w", vm.Name, it.NewID, it.Target, err)
	}
	return nil
}

// removeEarlierCopies destroys what an earlier attempt of a recreation may
// have left on the hosts it tried: a definition whose call failed (a time-out,
// a cut link) can still have been made, and as the copy keeps the VM's id
// it would be a second copy of the VM once this attempt defines one. The
// fenced host's copy (the stale one) is never touched here.
func (c *Controller) removeEarlierCopies(ctx context.Context, d drivers.Driver, it *cluster.OpItem, vm *cluster.VM) {
	for _, h := range it.Tried {
		if h == it.Target || h == it.From || h == vm.Host {
			continue
		}
		err := d.Destroy(ctx, vm.ID, h)
		switch {
		case errors.Is(err, drivers.ErrNotFound):
			continue
		case err == nil:
			msg := fmt.Sprintf("removed the copy of VM %s that an earlier attempt left on %s (its call failed, but the definition was made): the VM is recreated on %s, once", vm.Name, h, it.Target)
			c.d.Log.Info(msg, "vm", vm.ID)
			c.apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{cluster.NewEvent("vm.leftover_destroyed", controllerActor, h, vm.ID, msg)}})
		case ctx.Err() == nil:
			msg := fmt.Sprintf("could not check %s for a copy of VM %s an earlier attempt may have left there: %v", h, vm.Name, err)
			c.d.Log.Warn(msg, "vm", vm.ID)
			c.apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{cluster.NewEvent("vm.leftover_unchecked", controllerActor, h, vm.ID, msg)}})
		}
	}
}

// hostPowerer is a driver whose VM ids are the same on several hosts (a
// recovered VM and its stale copy) and that can start the copy on one.
type hostPowerer interface {
	PowerOnAt(ctx context.Context, id, host string) error
}

// powerOnAt starts the copy of id on host.
func powerOnAt(ctx context.Context, d drivers.Driver, id, host string) error {
	if hp, ok := d.(hostPowerer); ok {
		return hp.PowerOnAt(ctx, id, host)
	}
	return d.PowerOn(ctx, id)
}

// finish records how a step ended.
func (c *Controller) finish(ctx context.Context, op *cluster.Operation, it cluster.OpItem, err error, note string) bool {
	now := c.now()
	fi := &cluster.FinishItem{Op: op.ID, VM: it.VM, OK: err == nil, NewID: it.NewID, Time: now}
	if err == nil {
		msg := fmt.Sprintf("%s VM %s done", it.Action, it.Name)
		switch {
		case isRecovery(it.Action) && it.Target != "" && it.Target == it.From:
			msg = fmt.Sprintf("VM %s is back on its host %s, which returned", it.Name, it.Target)
		case it.Target != "" && it.Action != cluster.ActionPowerOn && it.Action != cluster.ActionShutdown:
			msg = fmt.Sprintf("%s VM %s to %s done", it.Action, it.Name, it.Target)
		}
		if note != "" {
			msg += " (" + note + ")"
		}
		fi.Event = stepEvent(op, it, it.From, it.Target, "step.done", "%s", msg)
	} else {
		fi.Error = err.Error()
		next := "will try again"
		if it.Attempts >= op.Attempts() {
			next = "giving up"
		}
		var lost *targetLostError
		if errors.As(err, &lost) {
			fi.TargetLost = true
			if it.TargetLosses < cluster.MaxTargetLosses && !op.Cancelled {
				next = "not counted: the target was lost; will try elsewhere"
			}
		}
		if _, ok := sourceLost(err); ok {
			fi.SourceLost = true
			if it.SourceLosses < cluster.MaxSourceLosses && !op.Cancelled {
				next = "not counted: the connection to its host dropped; will try again"
			}
		}
		fi.Event = stepEvent(op, it, it.From, it.Target, "step.failed", "%s VM %s failed (attempt %d of %d, %s): %v", it.Action, it.Name, it.Attempts, op.Attempts(), next, err)
		if op.Kind == cluster.OpRecover {
			wait := c.d.Policy().Recovery.Backoff(it.Attempts)
			fi.Event = stepEvent(op, it, it.From, it.Target, "recovery.blocked", "%s VM %s failed (attempt %d; tried again in %s — recovery never gives up): %v", it.Action, it.Name, it.Attempts, wait, err)
		}
	}
	return c.apply(ctx, fi)
}

// apply writes a command; on failure it logs and reports false.
func (c *Controller) apply(ctx context.Context, cmd cluster.Command) bool {
	_, err := c.d.Raft.Apply(ctx, cmd)
	return c.applied(err)
}

// applied is apply's verdict on a write's result: false when it was not
// recorded (leadership is probably gone), true when it was or when the
// state machine refused it (logged).
func (c *Controller) applied(err error) bool {
	if err != nil {
		var ae *cluster.ApplyError
		if errors.As(err, &ae) {
			c.d.Log.Warn("operation step refused", "err", err)
			return true
		}
		c.d.Log.Warn("operation step not recorded", "err", err)
		return false
	}
	return true
}

func opEvent(op *cluster.Operation, typ, vm, format string, args ...any) cluster.Event {
	e := cluster.NewEvent(typ, controllerActor, op.Host, vm, fmt.Sprintf(format, args...))
	e.Operation = op.ID
	return e
}

// stepEvent is an event about a step of op: it belongs to the VM, to the
// host the VM leaves (from; the operation's host when unknown) and to the
// host it goes to (to), so each host's log tells what left and what
// arrived.
func stepEvent(op *cluster.Operation, it cluster.OpItem, from, to, typ, format string, args ...any) cluster.Event {
	e := opEvent(op, typ, it.VM, format, args...)
	if from != "" {
		e.Host = from
	}
	if to != e.Host && it.Action != cluster.ActionPowerOn && it.Action != cluster.ActionShutdown {
		e.Target = to
	}
	return e
}

// Running is the running operations, oldest first.
func Running(st *cluster.State) []*cluster.Operation {
	var out []*cluster.Operation
	for _, op := range st.Operations {
		if op.State == cluster.OpRunning {
			out = append(out, op)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// openedForExit shows a host leaving maintenance as open, so that VMs can be
// placed back on it.
func openedForExit(st *cluster.State, host string) *cluster.State {
	h := st.Hosts[host]
	if h == nil {
		return st
	}
	v := st.Snapshot()
	nh := *h
	nh.Admin, nh.Maintenance = cluster.Available, cluster.MaintenanceOff
	v.Hosts[host] = &nh
	return v
}
