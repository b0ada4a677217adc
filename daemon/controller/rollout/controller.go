// Package rollout runs rolling maintenance on the leader: for each host of
// a rollout, in waves, it enters maintenance (the evacuation Herd already
// has), runs the host's hook or waits, waits for the host to be back and
// healthy, and leaves maintenance. Every phase change is recorded in raft
// as a compare-and-set before the controller acts on it, so a new leader
// resumes exactly where the old one was and never repeats a finished host
// step; a hook whose leader was lost is never run again (its host waits for
// its return after a reboot, or for `herd rollout continue`).
package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
)

// Applier writes a command through raft; an error means not committed, or
// refused by the state machine (*cluster.ApplyError).
type Applier interface {
	Apply(ctx context.Context, cmd cluster.Command) error
}

// Maintenance enters and leaves maintenance through the server's own
// operations. Enter reports, for a host that cannot enter now, whether to
// wait (a transient reason, such as failover capacity while other hosts are
// out) or fail the host.
type Maintenance interface {
	// CanEnter says whether host may enter maintenance now: "" and nil
	// when it may; a reason to wait; or an error that fails the host.
	CanEnter(st *cluster.State, host, migrate string, force bool) (wait string, err error)
	// Enter starts host's evacuation as operation id.
	Enter(ctx context.Context, host, migrate string, force bool, id, why string) error
	// Exit starts host's exit from maintenance as operation id, moving
	// its VMs back when moveBack.
	Exit(ctx context.Context, host string, moveBack bool, id string) error
}

// Gate says whether a host's step may start now; when not, why (a closed
// maintenance window, with when it opens). The rollout waits and says so.
type Gate interface {
	MayStart(r *cluster.Rollout, host string, now time.Time) (ok bool, reason string)
}

// HookRunner runs a rollout hook to its end, its output captured.
type HookRunner interface {
	Run(ctx context.Context, hook policy.RolloutHook, env map[string]string) (output string, err error)
}

// Clock is the wall time.
type Clock interface{ Now() time.Time }

// Observer takes the durations of ended phases (metrics).
type Observer interface {
	PhaseEnded(phase cluster.RolloutPhase, seconds float64)
	HookEnded(result string)
}

// Deps are what the controller works with.
type Deps struct {
	State       func() *cluster.State
	Policy      func() *policy.Document
	Apply       Applier
	Maintenance Maintenance
	Hooks       HookRunner
	// Gate may be nil: steps start whenever a slot is free.
	Gate     Gate
	Clock    Clock
	Observer Observer
	// AgentStarted says when host's agent (if it runs one) last said it
	// started; zero when unknown. May be nil.
	AgentStarted func(host string) time.Time
	// APIAddr is given to hooks as HERD_ADDR.
	APIAddr string
	Log     *slog.Logger
	// Tick is how often the rollouts are looked at (250 ms when zero).
	Tick time.Duration
}

// Controller is the leader's rollout controller.
type Controller struct {
	d Deps

	mu sync.Mutex
	// hooks are the hook runs this leader started, by rollout/host.
	hooks map[string]*hookRun
	// upSince is when a returning host was first seen up and healthy.
	upSince map[string]time.Time
	// agentSeen is the start time a waiting host's agent reported when
	// this leader first looked: another one means the agent restarted.
	agentSeen map[string]time.Time
	wg        sync.WaitGroup
}

type hookRun struct {
	done   bool
	err    error
	output string
}

// New returns a controller.
func New(d Deps) *Controller {
	if d.Tick <= 0 {
		d.Tick = 250 * time.Millisecond
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	return &Controller{d: d}
}

// Name implements the server's Controller.
func (c *Controller) Name() string { return "rollout" }

// Run drives the rollouts until ctx ends (leadership lost).
func (c *Controller) Run(ctx context.Context) {
	c.mu.Lock()
	c.hooks, c.upSince, c.agentSeen = map[string]*hookRun{}, map[string]time.Time{}, map[string]time.Time{}
	c.mu.Unlock()
	t := time.NewTicker(c.d.Tick)
	defer t.Stop()
	for {
		c.Round(ctx)
		select {
		case <-ctx.Done():
			c.wg.Wait()
			return
		case <-t.C:
		}
	}
}

// Round looks at every rollout once.
func (c *Controller) Round(ctx context.Context) {
	st := c.d.State()
	var active []*cluster.Rollout
	for _, r := range st.SortedRollouts() {
		if !r.State.Terminal() {
			active = append(active, r)
		}
	}
	sort.Slice(active, func(i, j int) bool { return active[i].Created.Before(active[j].Created) })
	for _, r := range active {
		if ctx.Err() != nil {
			return
		}
		c.rollout(ctx, st, r)
	}
}

func key(r *cluster.Rollout, host string) string { return r.ID + "/" + host }

func (c *Controller) rollout(ctx context.Context, st *cluster.State, r *cluster.Rollout) {
	for i := range r.Hosts {
		h := r.Hosts[i]
		switch h.Phase {
		case cluster.PhaseEntering:
			c.entering(ctx, st, r, h)
		case cluster.PhaseWorking:
			c.working(ctx, st, r, h)
		case cluster.PhaseReturning:
			c.returning(ctx, st, r, h)
		case cluster.PhaseExiting:
			c.exiting(ctx, st, r, h)
		}
	}
	c.schedule(ctx, st, r)
}

// schedule starts the pending hosts of the current wave: a wave starts
// once every host of the earlier waves has ended, and never more than
// r.Parallel hosts are out (the state machine refuses more).
func (c *Controller) schedule(ctx context.Context, st *cluster.State, r *cluster.Rollout) {
	if r.State != cluster.RolloutRunning || r.Stopping {
		return
	}
	wave := 0
	for _, h := range r.Hosts {
		if !h.Phase.Terminal() && (wave == 0 || h.Wave < wave) {
			wave = h.Wave
		}
	}
	out := r.Out()
	now := c.d.Clock.Now()
	note := ""
	for _, h := range r.Hosts {
		if h.Phase != cluster.PhasePending || h.Wave != wave || out >= r.Parallel {
			continue
		}
		if c.d.Gate != nil {
			if ok, why := c.d.Gate.MayStart(r, h.Host, now); !ok {
				note = why
				break
			}
		}
		wait, err := c.d.Maintenance.CanEnter(st, h.Host, r.Migrate, r.Force)
		if err != nil && out > 0 {
			// The hosts out may be what stands in the way: wait for them.
			wait, err = err.Error(), nil
		}
		if err != nil {
			c.step(ctx, r, h, cluster.PhaseFailed, stepOpts{err: fmt.Sprintf("cannot enter maintenance: %v", err)},
				"rollout.host_failed", "rollout %s: host %s cannot enter maintenance: %v", r.ID, h.Host, err)
			continue
		}
		if wait != "" {
			note = fmt.Sprintf("host %s waits: %s", h.Host, wait)
			continue
		}
		id := EvacuationID(r.ID, h.Host)
		if c.step(ctx, r, h, cluster.PhaseEntering, stepOpts{evacuation: id},
			"rollout.host_entering", "rollout %s: host %s (wave %d) enters maintenance (migrate %s)", r.ID, h.Host, h.Wave, r.Migrate) {
			out++
			h.Phase, h.Evacuation = cluster.PhaseEntering, id
			c.entering(ctx, c.d.State(), r, h)
		}
	}
	if note != r.Note {
		c.apply(ctx, &cluster.RolloutControl{Rollout: r.ID, Action: cluster.RolloutNote, Note: note, Time: now,
			Event: c.event(r, "", "rollout.waiting", "rollout %s waits: %s", r.ID, orNone(note))})
	}
}

func orNone(s string) string {
	if s == "" {
		return "no longer"
	}
	return s
}

// EvacuationID and ExitID name a host step's maintenance operations, so
// that a new leader finds the one its predecessor started.
func EvacuationID(rollout, host string) string { return rollout + "-" + host + "-enter" }

// ExitID names the exit operation of a host step.
func ExitID(rollout, host string) string { return rollout + "-" + host + "-exit" }

func (c *Controller) entering(ctx context.Context, st *cluster.State, r *cluster.Rollout, h cluster.RolloutHost) {
	host := st.Hosts[h.Host]
	op := st.Operations[h.Evacuation]
	if op == nil {
		// Recorded before acting: start it now (first time, or the
		// previous leader was lost in between).
		if host != nil && host.Maintenance != cluster.MaintenanceOff {
			c.step(ctx, r, h, cluster.PhaseFailed, stepOpts{err: fmt.Sprintf("host is in maintenance %s by operation %s, not this rollout's", host.Maintenance, host.Operation)},
				"rollout.host_failed", "rollout %s: host %s was put in maintenance by operation %s meanwhile; it is left as it is", r.ID, h.Host, host.Operation)
			return
		}
		err := c.d.Maintenance.Enter(ctx, h.Host, r.Migrate, r.Force, h.Evacuation, "rollout "+r.ID)
		if err != nil && ctx.Err() == nil {
			var ae *cluster.ApplyError
			if errors.As(err, &ae) || isRequestError(err) {
				c.step(ctx, r, h, cluster.PhaseFailed, stepOpts{err: err.Error()},
					"rollout.host_failed", "rollout %s: host %s cannot enter maintenance: %v", r.ID, h.Host, err)
				return
			}
			c.d.Log.Warn("rollout: enter maintenance", "rollout", r.ID, "host", h.Host, "err", err)
		}
		return
	}
	switch {
	case op.State == cluster.OpSucceeded && host != nil && host.Maintenance == cluster.MaintenanceOn:
		hookName := r.Hook
		opts := stepOpts{hookRun: hookName != ""}
		msg := "runs hook " + hookName
		if hookName == "" {
			// Its agent's start now, so that a restart later shows.
			c.agentRestarted(key(r, h.Host), h.Host)
			msg = waitNote(r, h.Host)
			opts.note = msg
		}
		if c.step(ctx, r, h, cluster.PhaseWorking, opts, "rollout.host_working", "rollout %s: host %s is in maintenance and %s", r.ID, h.Host, msg) && hookName != "" {
			c.startHook(ctx, r, h)
		}
	case op.State.Terminal() && op.State != cluster.OpSucceeded:
		why := op.Error
		if why == "" {
			why = "evacuation " + string(op.State)
		}
		c.step(ctx, r, h, cluster.PhaseFailed, stepOpts{err: fmt.Sprintf("evacuation %s %s: %s; the host is left in maintenance", op.ID, op.State, why)},
			"rollout.host_failed", "rollout %s: host %s failed to enter maintenance (operation %s %s: %s); it is left in maintenance", r.ID, h.Host, op.ID, op.State, why)
	}
}

// requestError marks the maintenance entry points' own refusals.
type requestError interface{ RequestError() bool }

func isRequestError(err error) bool {
	var re requestError
	return errors.As(err, &re) && re.RequestError()
}

func (c *Controller) startHook(ctx context.Context, r *cluster.Rollout, h cluster.RolloutHost) {
	k := key(r, h.Host)
	doc := c.d.Policy()
	hook := doc.Rollout.Hook(r.Hook)
	run := &hookRun{}
	c.mu.Lock()
	c.hooks[k] = run
	c.mu.Unlock()
	if hook == nil {
		c.mu.Lock()
		run.done, run.err = true, fmt.Errorf("hook %q is no longer in the policy (rollout.hooks)", r.Hook)
		c.mu.Unlock()
		return
	}
	env := map[string]string{
		"HERD_HOST":    h.Host,
		"HERD_ROLLOUT": r.ID,
		"HERD_HOOK":    hook.Name,
		"HERD_WAVE":    fmt.Sprint(h.Wave),
		"HERD_ADDR":    c.d.APIAddr,
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		out, err := c.d.Hooks.Run(ctx, *hook, env)
		c.mu.Lock()
		run.done, run.err, run.output = true, err, out
		c.mu.Unlock()
	}()
}

func hostUp(h *cluster.Host) bool {
	return h != nil && h.Connection == cluster.Connected && h.Health == cluster.HealthAlive
}

func (c *Controller) working(ctx context.Context, st *cluster.State, r *cluster.Rollout, h cluster.RolloutHost) {
	host := st.Hosts[h.Host]
	k := key(r, h.Host)
	c.mu.Lock()
	run := c.hooks[k]
	var done bool
	var err error
	var output string
	if run != nil {
		done, err, output = run.done, run.err, run.output
	}
	c.mu.Unlock()
	if run != nil {
		if !done {
			return
		}
		out := tail(output, 2000)
		result, ok := "ok", false
		if err != nil {
			result = "error"
			ok = c.step(ctx, r, h, cluster.PhaseFailed, stepOpts{err: fmt.Sprintf("hook %s: %v", r.Hook, err)},
				"rollout.hook_failed", "rollout %s: hook %s failed on host %s: %v; the host is left in maintenance. Output: %s", r.ID, r.Hook, h.Host, err, out)
		} else {
			ok = c.step(ctx, r, h, cluster.PhaseReturning, stepOpts{}, "rollout.hook_done",
				"rollout %s: hook %s ended on host %s; waiting for the host to be back and healthy. Output: %s", r.ID, r.Hook, h.Host, out)
		}
		if ok {
			c.mu.Lock()
			delete(c.hooks, k)
			c.mu.Unlock()
			if c.d.Observer != nil {
				c.d.Observer.HookEnded(result)
			}
		}
		return
	}
	// A wait, or a hook the previous leader started: its result is
	// unknown and it is not run again.
	switch {
	case c.agentRestarted(k, h.Host):
		c.step(ctx, r, h, cluster.PhaseReturning, stepOpts{}, "rollout.host_back",
			"rollout %s: the agent of host %s restarted (a reboot): its work is done; waiting for it to be back and healthy", r.ID, h.Host)
	case h.Continued:
		c.step(ctx, r, h, cluster.PhaseReturning, stepOpts{}, "rollout.host_continued",
			"rollout %s: host %s's work is done (continued by an operator); waiting for it to be back and healthy", r.ID, h.Host)
	case !hostUp(host) && !h.DownSeen:
		c.step(ctx, r, h, cluster.PhaseWorking, stepOpts{downSeen: true, note: "host down (a reboot): waiting for its return"},
			"rollout.host_down", "rollout %s: host %s went down during its work (expected: it is in maintenance, not fenced); waiting for its return", r.ID, h.Host)
	case hostUp(host) && h.DownSeen:
		c.step(ctx, r, h, cluster.PhaseReturning, stepOpts{}, "rollout.host_back",
			"rollout %s: host %s is back after going down", r.ID, h.Host)
	case r.Hook != "" && h.Note == "":
		c.step(ctx, r, h, cluster.PhaseWorking, stepOpts{note: "hook " + r.Hook + " was started by a previous leader and is not run again: " + waitNote(r, h.Host)},
			"rollout.hook_orphaned", "rollout %s: the leader that ran hook %s on host %s was lost; the hook is not run again: the host waits for its return after a reboot, or herd rollout continue %s %s", r.ID, r.Hook, h.Host, r.ID, h.Host)
	}
}

// waitNote says what a host in its work waits for.
func waitNote(r *cluster.Rollout, host string) string {
	return "waits for herd rollout continue " + r.ID + " " + host + ", its return after a reboot, or its agent's restart"
}

// agentRestarted reports whether the agent of a waiting host says it
// started at another time than when this leader first looked.
func (c *Controller) agentRestarted(k, host string) bool {
	if c.d.AgentStarted == nil {
		return false
	}
	t := c.d.AgentStarted(host)
	if t.IsZero() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	seen, ok := c.agentSeen[k]
	if !ok {
		c.agentSeen[k] = t
		return false
	}
	if seen.Equal(t) {
		return false
	}
	delete(c.agentSeen, k)
	return true
}

// settle is how long a returning host must stay up and healthy before it
// leaves maintenance: a reboot that a hook started just before it ended
// takes up to suspect_after to show as a lost connection, and a host seen
// down is back only once alive again for alive_after.
func (c *Controller) settle() time.Duration {
	hp := c.d.Policy().Health
	return hp.AliveAfter + hp.SuspectAfter + time.Second
}

func (c *Controller) returning(ctx context.Context, st *cluster.State, r *cluster.Rollout, h cluster.RolloutHost) {
	host := st.Hosts[h.Host]
	k := key(r, h.Host)
	now := c.d.Clock.Now()
	c.mu.Lock()
	since, seen := c.upSince[k]
	if !hostUp(host) {
		delete(c.upSince, k)
	} else if !seen {
		c.upSince[k], since = now, now
	}
	c.mu.Unlock()
	if !hostUp(host) || now.Sub(since) < c.settle() {
		return
	}
	id := ExitID(r.ID, h.Host)
	if c.step(ctx, r, h, cluster.PhaseExiting, stepOpts{exit: id}, "rollout.host_exiting",
		"rollout %s: host %s is back and healthy; it leaves maintenance", r.ID, h.Host) {
		c.mu.Lock()
		delete(c.upSince, k)
		c.mu.Unlock()
		h.Phase, h.Exit = cluster.PhaseExiting, id
		c.exiting(ctx, c.d.State(), r, h)
	}
}

func (c *Controller) exiting(ctx context.Context, st *cluster.State, r *cluster.Rollout, h cluster.RolloutHost) {
	host := st.Hosts[h.Host]
	op := st.Operations[h.Exit]
	if op == nil {
		if host != nil && host.Maintenance == cluster.MaintenanceOff {
			c.step(ctx, r, h, cluster.PhaseDone, stepOpts{}, "rollout.host_done",
				"rollout %s: host %s is out of maintenance (someone else took it out)", r.ID, h.Host)
			return
		}
		err := c.d.Maintenance.Exit(ctx, h.Host, r.MoveBack, h.Exit)
		if err != nil && ctx.Err() == nil {
			var ae *cluster.ApplyError
			if errors.As(err, &ae) || isRequestError(err) {
				c.step(ctx, r, h, cluster.PhaseFailed, stepOpts{err: err.Error()},
					"rollout.host_failed", "rollout %s: host %s cannot leave maintenance: %v", r.ID, h.Host, err)
				return
			}
			c.d.Log.Warn("rollout: exit maintenance", "rollout", r.ID, "host", h.Host, "err", err)
		}
		return
	}
	switch {
	case op.State == cluster.OpSucceeded && host != nil && host.Maintenance == cluster.MaintenanceOff:
		c.step(ctx, r, h, cluster.PhaseDone, stepOpts{}, "rollout.host_done",
			"rollout %s: host %s is done: back out of maintenance and %s", r.ID, h.Host, host.Admin)
	case op.State.Terminal() && op.State != cluster.OpSucceeded:
		c.step(ctx, r, h, cluster.PhaseFailed, stepOpts{err: fmt.Sprintf("exit %s %s: %s", op.ID, op.State, op.Error)},
			"rollout.host_failed", "rollout %s: host %s failed to leave maintenance (operation %s %s: %s)", r.ID, h.Host, op.ID, op.State, op.Error)
	}
}

type stepOpts struct {
	evacuation, exit string
	hookRun          bool
	downSeen         bool
	note, err        string
}

// step records host h's move to phase to (compare-and-set on its phase).
// It reports whether the step was committed.
func (c *Controller) step(ctx context.Context, r *cluster.Rollout, h cluster.RolloutHost, to cluster.RolloutPhase, o stepOpts, typ, format string, args ...any) bool {
	now := c.d.Clock.Now()
	ev := c.event(r, h.Host, typ, format, args...)
	cmd := &cluster.RolloutStep{Rollout: r.ID, Host: h.Host, From: h.Phase, To: to, Evacuation: o.evacuation, Exit: o.exit,
		HookRun: o.hookRun, DownSeen: o.downSeen, Note: o.note, Error: o.err, Time: now, Event: ev}
	if !c.apply(ctx, cmd) {
		return false
	}
	if to != h.Phase && c.d.Observer != nil && !h.PhaseSince.IsZero() && h.Phase != cluster.PhasePending {
		c.d.Observer.PhaseEnded(h.Phase, now.Sub(h.PhaseSince).Seconds())
	}
	return true
}

func (c *Controller) event(r *cluster.Rollout, host, typ, format string, args ...any) cluster.Event {
	ev := cluster.NewEvent(typ, "rollout", host, "", fmt.Sprintf(format, args...))
	ev.Time = c.d.Clock.Now().UTC()
	ev.Operation = r.ID
	return ev
}

func (c *Controller) apply(ctx context.Context, cmd cluster.Command) bool {
	if err := c.d.Apply.Apply(ctx, cmd); err != nil {
		if ctx.Err() == nil {
			c.d.Log.Warn("rollout: write refused or not committed", "err", err)
		}
		return false
	}
	return true
}

// tail returns the last n bytes of s, marked when cut.
func tail(s string, n int) string {
	if s == "" {
		return "(none)"
	}
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
