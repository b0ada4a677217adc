// Package recovery is the leader's recovery controller: it fences dead
// hosts through the policy's chain (with the storm guard), starts the
// recovery of fenced hosts' VMs as operations the operations controller
// runs, and destroys the stale copies on hosts that came back.
package recovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/controller"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/drivers/fence"
	"github.com/herd-project/herd/internal/ctxsleep"
	"github.com/herd-project/herd/metrics"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/placement"
	"github.com/herd-project/herd/policy/plan"
)

// controllerActor names the controllers in events.
const controllerActor = "herd"

// Leases is the leader's memory of agents' leases.
type Leases interface {
	// Last is when host's lease was last renewed, as far as this leader
	// may assume (never before it took over).
	Last(host string) time.Time
	// Deadline is when host's lease counts as expired on the leader.
	Deadline(host string, ttl, margin time.Duration) time.Time
}

// Deps are what the recovery controller works with.
type Deps struct {
	State   controller.State
	Raft    controller.Applier
	Drivers controller.Drivers
	Leases  Leases
	// Policy is the policy in force.
	Policy func() *policy.Document
	// Compiled is the policy's rules compiled against st.
	Compiled func(doc *policy.Document, st *cluster.State) *placement.Compiled
	// DevFence powers off a dev simulator host (fencing type dev); it
	// fails with ErrUnavailable outside dev mode.
	DevFence func(host string) error
	// NewOpID names a new operation.
	NewOpID func() string
	Metrics *metrics.Metrics
	Log     *slog.Logger
}

// fenceRetry is how long a failed fencing chain waits before it runs again.
const fenceRetry = 30 * time.Second

// Controller runs on the leader: it fences dead hosts through the
// policy's chain, recovers fenced hosts' VMs (as operations the operations
// controller runs), and destroys the stale copies on hosts that came back.
// Invariant: nothing is recreated from a host that is not fenced — a
// recovery operation can only start for a fenced host (the state machine
// refuses it otherwise).
type Controller struct {
	d Deps

	mu       sync.Mutex
	fencing  map[string]bool      // hosts whose chain runs now
	retryAt  map[string]time.Time // hosts whose chain failed: not before
	cleaning map[string]bool      // hosts whose stale copies are being destroyed
	// autostart are the VMs whose autostart is being (or was) turned off.
	autostart map[string]bool
	storm     bool
	held      map[string]bool // dead hosts whose fencing waits for suspects (logged once)
	observed  map[string]bool // recovery operations whose end is counted
	wg        sync.WaitGroup
	// fenced wakes the rounds when a host is fenced (wake.go).
	fenced chan struct{}
}

// New is the recovery controller.
func New(d Deps) *Controller { return &Controller{d: d, fenced: make(chan struct{}, 1)} }

// Name names the controller in logs.
func (c *Controller) Name() string { return "recovery" }

// Run fences and recovers until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.mu.Lock()
	c.fencing, c.retryAt, c.cleaning, c.storm = map[string]bool{}, map[string]time.Time{}, map[string]bool{}, false
	c.autostart, c.held = map[string]bool{}, map[string]bool{}
	c.observed = map[string]bool{}
	c.d.State.Read(func(st *cluster.State) {
		for id, op := range st.Operations {
			if op.Kind == cluster.OpRecover && op.State.Terminal() {
				c.observed[id] = true
			}
		}
	})
	c.mu.Unlock()
	defer c.d.Metrics.RecoveryStorm.Set(0)
	for ctx.Err() == nil {
		c.round(ctx, time.Now())
		c.nextRound(ctx)
	}
	c.wg.Wait()
}

// hostView is what one round needs of a host.
type hostView struct {
	host   *cluster.Host
	live   int // VMs on it (stale copies are not VMs)
	stale  []*cluster.StaleCopy
	active *cluster.Operation
	// rollout: the host is in its rollout work (a reboot): down is
	// expected, and it is neither fenced nor recovered.
	rollout bool
}

func (c *Controller) round(ctx context.Context, now time.Time) {
	doc := c.d.Policy()
	r := doc.Recovery
	views := map[string]*hostView{}
	var ended []*cluster.Operation
	var autostart []*cluster.VM
	var sc policy.StormCount
	c.d.State.Read(func(st *cluster.State) {
		working := st.RolloutWorkingHosts()
		counted := st.Hosts
		if len(working) > 0 {
			// Hosts rebooting for a rollout are down on purpose: they
			// make no storm.
			counted = make(map[string]*cluster.Host, len(st.Hosts))
			for name, h := range st.Hosts {
				if !working[name] {
					counted[name] = h
				}
			}
		}
		sc = policy.CountStorm(counted, now, doc.Health.DeadAfter)
		for name, h := range st.Hosts {
			views[name] = &hostView{host: h, active: st.ActiveOperationOn(name), rollout: working[name]}
		}
		for _, sc := range st.StaleCopies {
			if v := views[sc.Host]; v != nil {
				v.stale = append(v.stale, sc)
			}
		}
		for _, vm := range st.VMs {
			v := views[vm.Host]
			if v == nil {
				continue
			}
			if vm.Autostart && v.host.Health == cluster.HealthAlive && v.host.Connection == cluster.Connected {
				autostart = append(autostart, vm)
			}
			v.live++
		}
		for id, op := range st.Operations {
			if op.Kind == cluster.OpRecover && op.State.Terminal() && !c.observed[id] {
				ended = append(ended, op)
			}
		}
	})
	for _, op := range ended {
		c.observed[op.ID] = true
		c.d.Metrics.Recoveries.WithLabelValues(string(op.State)).Inc()
		if op.State == cluster.OpSucceeded && !op.Detected.IsZero() {
			c.d.Metrics.RecoveryDuration.Observe(op.Updated.Sub(op.Detected).Seconds())
		}
	}

	c.disableAutostart(ctx, doc, autostart)

	storm := sc.Storm(r.StormThreshold)
	c.noteStorm(ctx, storm, sc.Dead, sc.Total, r.StormThreshold)
	// A dead host's fencing waits up to dead_after while suspects could
	// still turn it into a storm: the hosts a network failure cuts off are
	// all suspect by the time the first one is dead. A host suspect for
	// longer than that is not on its way to dead with this one.
	hold := !storm && sc.Hold(r.StormThreshold)
	if !hold {
		c.mu.Lock()
		clear(c.held)
		c.mu.Unlock()
	}

	names := make([]string, 0, len(views))
	for n := range views {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		v := views[name]
		h := v.host
		switch {
		case h.Health == cluster.HealthDead && v.live > 0:
			if !r.Automatic || storm || v.rollout {
				continue
			}
			if hold && now.Sub(h.DownSince) < doc.Health.DeadAfter {
				c.noteHold(name, sc)
				continue
			}
			c.mu.Lock()
			busy := c.fencing[name] || now.Before(c.retryAt[name])
			if !busy {
				c.fencing[name] = true
			}
			c.mu.Unlock()
			if !busy {
				c.wg.Add(1)
				go func() {
					defer c.wg.Done()
					c.fence(ctx, doc, name)
				}()
			}
		case h.Health == cluster.HealthFenced && v.active == nil:
			c.startRecovery(ctx, doc, name)
		case h.Health != cluster.HealthFenced && h.Health != cluster.HealthDead && len(v.stale) > 0:
			c.mu.Lock()
			busy := c.cleaning[name]
			c.cleaning[name] = true
			c.mu.Unlock()
			if !busy {
				stale := v.stale
				c.wg.Add(1)
				go func() {
					defer c.wg.Done()
					c.destroyStale(ctx, name, stale)
				}()
			}
		}
	}
}

// noteStorm records entering and leaving a fencing storm.
func (c *Controller) noteStorm(ctx context.Context, storm bool, dead, total int, share float64) {
	c.mu.Lock()
	changed := storm != c.storm
	c.storm = storm
	c.mu.Unlock()
	c.d.Metrics.RecoveryStorm.Set(b2f(storm))
	if !changed {
		return
	}
	msg := fmt.Sprintf("fencing storm guard: %d of %d hosts look dead (more than %.0f%%): the management network is the likelier cause; nothing is fenced automatically — confirm dead hosts by hand (herd host status HOST OFFLINE --confirm-fenced)", dead, total, share*100)
	typ := "recovery.storm"
	if !storm {
		msg, typ = fmt.Sprintf("fencing storm over: %d of %d hosts look dead; automatic fencing resumes", dead, total), "recovery.storm_over"
	}
	c.d.Log.Warn(msg)
	c.apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{cluster.NewEvent(typ, controllerActor, "", "", msg)}})
}

// noteHold logs, once per host and hold, that a dead host's fencing waits
// for the suspect hosts to settle.
func (c *Controller) noteHold(host string, sc policy.StormCount) {
	c.mu.Lock()
	seen := c.held[host]
	c.held[host] = true
	c.mu.Unlock()
	if !seen {
		c.d.Log.Info("fencing waits: other hosts are suspect and could make this a fencing storm", "host", host, "dead", sc.Dead, "suspect", sc.Suspect, "hosts", sc.Total)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ErrUnavailable marks a method that does not apply to a host (no agent
// lease, no dev simulator): tried, but not a failure of the device.
var ErrUnavailable = errors.New("not available for this host")

// fence runs the chain for a dead host until one method confirms it is off.
func (c *Controller) fence(ctx context.Context, doc *policy.Document, host string) {
	defer func() {
		c.mu.Lock()
		delete(c.fencing, host)
		c.mu.Unlock()
	}()
	methods := c.methodsFor(doc, host)
	var reasons []string
	for _, m := range methods {
		start := time.Now()
		err := c.tryMethod(ctx, doc, m, host)
		if ctx.Err() != nil {
			return // leadership lost: the next leader starts over
		}
		result := "success"
		switch {
		case errors.Is(err, ErrUnavailable):
			result = "unavailable"
		case err != nil:
			result = "failure"
		}
		c.d.Metrics.FencingAttempts.WithLabelValues(host, m.Type, result).Inc()
		if err == nil {
			msg := fmt.Sprintf("host %s fenced by %s (%s) in %.1fs: it is off; its VMs are recreated elsewhere", host, m.Name, m.Type, time.Since(start).Seconds())
			ev := cluster.NewEvent("host.fenced", controllerActor, host, "", msg)
			if c.apply(ctx, &cluster.HostFenced{Host: host, Method: m.Type, OK: true, Event: ev}) {
				c.d.Log.Info(msg)
				c.wakeRound()
			}
			return
		}
		c.d.Log.Warn("fencing method did not confirm", "host", host, "method", m.Name, "type", m.Type, "err", err)
		reasons = append(reasons, fmt.Sprintf("%s (%s): %v", m.Name, m.Type, err))
	}
	why := strings.Join(reasons, "; ")
	if why == "" {
		why = "no fencing method covers this host"
	}
	msg := fmt.Sprintf("fencing of host %s failed: %s. Nothing is recreated until a method confirms (tried again in %s) or an operator confirms the host is off: herd host status %s OFFLINE --confirm-fenced", host, why, fenceRetry, host)
	c.apply(ctx, &cluster.HostFenced{Host: host, OK: false, Error: why, Event: cluster.NewEvent("host.fencing_failed", controllerActor, host, "", msg)})
	c.mu.Lock()
	c.retryAt[host] = time.Now().Add(fenceRetry)
	c.mu.Unlock()
}

// methodsFor returns the chain's methods that cover host, in order; the
// agent lease alone when the policy names none.
func (c *Controller) methodsFor(doc *policy.Document, host string) []policy.FenceMethod {
	chain := doc.Recovery.Fencing
	if len(chain) == 0 {
		chain = []policy.FenceMethod{{Name: "lease", Type: policy.FenceLease}}
	}
	var comp *placement.Compiled
	var out []policy.FenceMethod
	for _, m := range chain {
		covers := len(m.Hosts) == 0 && m.HostGroup == ""
		for _, h := range m.Hosts {
			covers = covers || h == host
		}
		if !covers && m.HostGroup != "" {
			st := c.d.State.State()
			if comp == nil {
				comp = c.d.Compiled(doc, st)
			}
			h := st.Hosts[host]
			covers = h != nil && comp != nil && comp.InHostGroup(h, m.HostGroup)
		}
		if covers {
			out = append(out, m)
		}
	}
	return out
}

// tryMethod runs one fencing method; nil means the host is confirmed off.
func (c *Controller) tryMethod(ctx context.Context, doc *policy.Document, m policy.FenceMethod, host string) error {
	switch m.Type {
	case policy.FencePower:
		a, err := powerAgent(m, host)
		if err != nil {
			return err
		}
		return a.Fence(ctx)
	case policy.FenceLease:
		return c.waitLease(ctx, doc, host)
	case policy.FenceDev:
		return c.d.DevFence(host)
	}
	return fmt.Errorf("unknown fencing type %q", m.Type)
}

// waitLease waits until host's agent lease has expired on the leader's
// clock (plus the margin): the agent has stopped its VMs by then. It fails
// at once when no agent holds a lease, and when the agent renews meanwhile
// (it is alive: the host is not dead).
func (c *Controller) waitLease(ctx context.Context, doc *policy.Document, host string) error {
	r := doc.Recovery
	start := c.d.Leases.Last(host)
	for {
		if last := c.d.Leases.Last(host); last.After(start) {
			return fmt.Errorf("the agent renewed its lease %s ago: the host is alive", time.Since(last).Round(time.Millisecond))
		}
		var h *cluster.Host
		c.d.State.Read(func(st *cluster.State) { h = st.Hosts[host] })
		if h == nil || h.LeaseTTL <= 0 {
			return fmt.Errorf("no agent holds a lease on this host: %w", ErrUnavailable)
		}
		if h.Health != cluster.HealthDead {
			return fmt.Errorf("host is %s again while waiting for its lease to expire", h.Health)
		}
		deadline := c.d.Leases.Deadline(host, h.LeaseTTL, r.LeaseMargin)
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(wait, 250*time.Millisecond)):
		}
	}
}

// powerAgent builds the fence agent of method m for host.
func powerAgent(m policy.FenceMethod, host string) (*fence.Agent, error) {
	path, err := agentPath(m.Agent)
	if err != nil {
		return nil, err
	}
	params := map[string]string{}
	for k, v := range m.Params {
		params[k] = strings.ReplaceAll(v, "{host}", host)
	}
	for k, v := range m.HostParams[host] {
		params[k] = strings.ReplaceAll(v, "{host}", host)
	}
	a := &fence.Agent{Name: m.Name + " " + host, Path: path, Params: params, SecretFiles: m.SecretFiles,
		Timeout: m.Timeout, ConfirmTimeout: m.ConfirmTimeout}
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("fence agent %s: %w", m.Name, err)
	}
	return a, nil
}

// agentPath finds a fence agent: a path as given, else in /usr/sbin, /sbin
// (where Debian's fence-agents puts them) or PATH.
func agentPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("fence agent %q not found in /usr/sbin, /sbin or PATH (Debian package fence-agents)", name)
	}
	return p, nil
}

// startRecovery starts the recovery of a fenced host: one step per VM that
// is neither a stale copy, already recreated, nor excluded by the policy —
// running ones are recreated and started, shut-off ones registered only —
// highest restart priority first.
func (c *Controller) startRecovery(ctx context.Context, doc *policy.Document, host string) {
	st := c.d.State.State()
	h := st.Hosts[host]
	if h == nil || h.Health != cluster.HealthFenced {
		return
	}
	// The same steps and order herd simulate failure predicts.
	comp := c.d.Compiled(doc, st)
	items := plan.RecoveryItems(st.VMsOn(host), host, comp, plan.RecoveryExcluded(doc.Recovery, comp))
	if len(items) == 0 {
		return
	}
	now := time.Now().UTC()
	detected := h.DownSince
	if detected.IsZero() {
		detected = now
	}
	op := cluster.Operation{ID: c.d.NewOpID(), Kind: cluster.OpRecover, Host: host, Actor: controllerActor, Created: now,
		MaxAttempts: cluster.UnlimitedAttempts, Detected: detected, Items: items}
	running, waiting := 0, 0
	for _, it := range items {
		switch it.Action {
		case cluster.ActionRecreate:
			running++
		case cluster.ActionAwaitHost:
			waiting++
		}
	}
	msg := fmt.Sprintf("recovery of host %s (fenced by %s) started: %d VMs to recreate and start, %d shut-off VMs to register, highest priority first", host, h.FencedBy, running, len(items)-running-waiting)
	if waiting > 0 {
		msg += fmt.Sprintf("; %d VMs excluded by recovery.exclude_vm_groups wait for the host", waiting)
	}
	ev := cluster.NewEvent("recovery.started", controllerActor, host, "", msg)
	ev.Operation = op.ID
	if !c.apply(ctx, &cluster.StartOperation{Op: op, Event: ev}) {
		return
	}
	c.d.Log.Info(msg, "op", op.ID)
	// Each VM's own story says what happened to its host and what comes.
	evs := make([]cluster.Event, 0, len(items))
	for _, it := range items {
		what := "it is recreated on another host and started"
		switch it.Action {
		case cluster.ActionRegister:
			what = "it was shut off: it is registered on another host, not started"
		case cluster.ActionAwaitHost:
			what = "it is excluded from recovery (recovery.exclude_vm_groups): it waits for its host, and runs there again when the host returns"
			if !it.WasRunning {
				what = "it is excluded from recovery (recovery.exclude_vm_groups): it waits for its host, shut off as before"
			}
		}
		typ := "vm.host_fenced"
		if it.Action == cluster.ActionAwaitHost {
			typ = "vm.awaiting_host"
		}
		e := cluster.NewEvent(typ, controllerActor, host, it.VM, fmt.Sprintf("host %s of VM %s crashed and was fenced by %s: %s", host, it.Name, h.FencedBy, what))
		e.Operation = op.ID
		evs = append(evs, e)
	}
	c.apply(ctx, &cluster.AppendEvents{Events: evs})
}

// PlacesVMs reports whether a recovery may still place VMs on other hosts:
// one whose only open steps wait for their host (recovery.exclude_vm_groups)
// places nothing, however long the host stays away.
func PlacesVMs(op *cluster.Operation) bool {
	for _, it := range op.Items {
		if !it.State.Terminal() && it.Action != cluster.ActionAwaitHost {
			return true
		}
	}
	return false
}

// destroyStale removes the stale copies on a host that answers again, then
// forgets them: until then the host cannot be made AVAILABLE.
func (c *Controller) destroyStale(ctx context.Context, host string, stale []*cluster.StaleCopy) {
	defer func() {
		c.mu.Lock()
		delete(c.cleaning, host)
		c.mu.Unlock()
	}()
	var gone, kept []string
	var names []string
	var events []cluster.Event
	for _, sc := range stale {
		var here bool
		c.d.State.Read(func(st *cluster.State) {
			vm := st.VMs[sc.VM]
			here = vm != nil && vm.Host == host && vm.ID == sc.ID
		})
		if here {
			// The VM itself is on this host now (moved back since): the
			// copy there is the VM, never destroyed; the record goes.
			kept = append(kept, sc.ID)
			continue
		}
		d, err := c.d.Drivers.Get(ctx, sc.Driver)
		if err == nil {
			tctx, cancel := context.WithTimeout(ctx, c.d.Policy().Maintenance.ShutdownTimeout)
			err = d.Destroy(tctx, sc.ID, host)
			cancel()
		}
		if err != nil && !errors.Is(err, drivers.ErrNotFound) {
			if ctx.Err() == nil {
				c.d.Log.Warn("destroy stale copy", "host", host, "vm", sc.Name, "err", err)
				c.apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{cluster.NewEvent("vm.stale_destroy_failed", controllerActor, host, sc.VM,
					fmt.Sprintf("could not destroy the stale copy of VM %s on host %s (tried again shortly): %v", sc.Name, host, err))}})
				ctxsleep.Sleep(ctx, 5*time.Second)
			}
			continue
		}
		gone = append(gone, sc.ID)
		names = append(names, sc.Name)
		// One entry in each VM's own story as well as the host's.
		events = append(events, cluster.NewEvent("vm.stale_destroyed", controllerActor, host, sc.VM,
			fmt.Sprintf("the stale copy of VM %s on host %s, left when the host was fenced, is destroyed (the VM itself was recreated elsewhere)", sc.Name, host)))
	}
	if len(gone)+len(kept) == 0 {
		return
	}
	msg := fmt.Sprintf("destroyed %d stale copies on host %s (their VMs run elsewhere since the host was fenced): %s", len(gone), host, strings.Join(names, ", "))
	if len(kept) > 0 {
		msg += fmt.Sprintf("; %d records forgotten without destroying anything, as their VMs are on the host again", len(kept))
	}
	if c.apply(ctx, &cluster.ForgetVMs{Host: host, IDs: append(gone, kept...), Event: cluster.NewEvent("host.stale_destroyed", controllerActor, host, "", msg)}) {
		c.apply(ctx, &cluster.AppendEvents{Events: events})
	}
}

// excluded returns the VMs the policy's recovery.exclude_vm_groups keep
// from being recreated.
func (c *Controller) excluded(doc *policy.Document, st *cluster.State) map[string]bool {
	if len(doc.Recovery.ExcludeVMGroups) == 0 {
		return map[string]bool{}
	}
	return plan.RecoveryExcluded(doc.Recovery, c.d.Compiled(doc, st))
}

// autostartSetter is a driver that can turn a VM's start at host boot off
// (libvirt).
type autostartSetter interface {
	SetAutostart(ctx context.Context, id string, on bool) error
}

// disableAutostart turns autostart off for the VMs Herd recovers, on hosts
// that answer: a host that boots after being fenced would otherwise start
// its copy of a VM that was recreated elsewhere before Herd can destroy it,
// and the VM would run twice. (vSphere HA does the same with its hosts'
// automatic VM startup.) VMs of recovery.exclude_vm_groups keep theirs.
func (c *Controller) disableAutostart(ctx context.Context, doc *policy.Document, vms []*cluster.VM) {
	c.mu.Lock()
	seen := make(map[string]bool, len(vms))
	for _, vm := range vms {
		seen[vm.ID] = true
	}
	for id := range c.autostart {
		if !seen[id] {
			delete(c.autostart, id) // off now, or gone
		}
	}
	var todo []*cluster.VM
	for _, vm := range vms {
		if !c.autostart[vm.ID] {
			c.autostart[vm.ID] = true
			todo = append(todo, vm)
		}
	}
	c.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	var excluded map[string]bool
	c.d.State.Read(func(st *cluster.State) { excluded = c.excluded(doc, st) })
	for _, vm := range todo {
		if excluded[vm.ID] {
			continue
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			err := c.setAutostartOff(ctx, vm)
			if err == nil {
				c.apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{cluster.NewEvent("vm.autostart_disabled", controllerActor, vm.Host, vm.ID,
					fmt.Sprintf("autostart of VM %s on host %s turned off: Herd restarts it after a host failure, and a host that boots again must not start a copy that runs elsewhere", vm.Name, vm.Host))}})
				return
			}
			if ctx.Err() != nil {
				return
			}
			c.d.Log.Warn("turn autostart off", "vm", vm.Name, "host", vm.Host, "err", err)
			c.apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{cluster.NewEvent("vm.autostart_disable_failed", controllerActor, vm.Host, vm.ID,
				fmt.Sprintf("could not turn autostart of VM %s on host %s off (tried again in a minute): %v", vm.Name, vm.Host, err))}})
			ctxsleep.Sleep(ctx, time.Minute)
			c.mu.Lock()
			delete(c.autostart, vm.ID)
			c.mu.Unlock()
		}()
	}
}

func (c *Controller) setAutostartOff(ctx context.Context, vm *cluster.VM) error {
	d, err := c.d.Drivers.Get(ctx, vm.Driver)
	if err != nil {
		return err
	}
	as, ok := d.(autostartSetter)
	if !ok {
		return fmt.Errorf("driver %s cannot change autostart: %w", vm.Driver, drivers.ErrNotSupported)
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return as.SetAutostart(tctx, vm.ID, false)
}

// apply writes a command; it reports whether it was committed.
func (c *Controller) apply(ctx context.Context, cmd cluster.Command) bool {
	if _, err := c.d.Raft.Apply(ctx, cmd); err != nil {
		if ctx.Err() == nil {
			c.d.Log.Warn("recovery step not recorded", "err", err)
		}
		return false
	}
	return true
}
