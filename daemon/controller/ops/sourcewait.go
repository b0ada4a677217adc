package ops

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
)

// A migration step needs the management connection to its VM's host (the
// source). When that connection is down for a moment (a loaded server, a
// libvirtd or hostd restarting), trying only burns the VM's attempts in a
// second and ends the evacuation in error. So a step waits for the
// connection, and no attempt is counted for it:
//
//   - before it starts, while the state shows the source not connected
//     (sourceGate);
//   - after an attempt that failed while the driver sees the source not
//     connected: the step stays running until the connection is back,
//     then the inventory tells what became of the VM — moved (the step is
//     done), still on its host (not counted, tried again; the target stays
//     a candidate), or still on two hosts (waited for) — so a VM whose
//     migration's outcome is unknown is never driven a second time before
//     it is known (awaitSource).
//
// Each wait lasts at most maintenance.migration_timeout (waiting is part
// of the step), and ends at once when the host is declared dead or
// fenced: then the failure counts and the recovery rules take the host
// over (policy.WaitForSource). At most cluster.MaxSourceLosses failures
// of one VM go uncounted.

// sourcePoll is how often a step waiting for its source's connection asks
// the driver again.
const sourcePoll = 250 * time.Millisecond

// sourceLostError is a step's failure during which the connection to the
// VM's host dropped; it is back and the VM did not move.
type sourceLostError struct {
	host   string
	conn   cluster.Connection
	waited time.Duration
	err    error
}

func (e *sourceLostError) Error() string {
	return fmt.Sprintf("%v (the connection to its host %s was %s; back after %s, the VM did not move)", e.err, e.host, e.conn, e.waited.Round(100*time.Millisecond))
}

func (e *sourceLostError) Unwrap() error { return e.err }

// sourceGate holds a migration step that has not started while the state
// shows its source host not connected (c.mu held). It returns nil when the
// step may start.
func (c *Controller) sourceGate(st *cluster.State, op *cluster.Operation, it cluster.OpItem, vm *cluster.VM, now time.Time) action {
	h := st.Hosts[vm.Host]
	if h == nil {
		return nil
	}
	k := key(op.ID, it.VM)
	since, waiting := c.waiting[k]
	waited := time.Duration(0)
	if waiting {
		waited = now.Sub(since)
	}
	bound := c.d.Policy().Maintenance.MigrationTimeout
	if policy.WaitForSource(h.Health, h.Connection, waited, bound) != policy.SourceWaiting {
		delete(c.waiting, k)
		return nil
	}
	if waiting {
		return wait
	}
	c.waiting[k] = now
	ev := stepEvent(op, it, vm.Host, "", "step.waiting", "%s VM %s waits for the connection to its host %s (%s) before attempt %d of %d; waiting is not counted, and lasts until the connection is back, at most maintenance.migration_timeout (%s), or until %s is declared dead (then the recovery rules apply)",
		it.Action, vm.Name, vm.Host, h.Connection, it.Attempts+1, op.Attempts(), bound, vm.Host)
	return func(ctx context.Context) bool {
		return c.apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{ev}})
	}
}

// afterFailure looks at why a migration step failed: the connection to
// its source dropped (awaitSource), or its target was lost. It returns the
// step's result — nil when the inventory shows the step done after all —
// and a note for its event.
func (c *Controller) afterFailure(ctx context.Context, op *cluster.Operation, it cluster.OpItem, vm *cluster.VM, err error) (error, string) {
	res, done := c.awaitSource(ctx, op, it, vm, err)
	switch {
	case done:
		return nil, fmt.Sprintf("found done once the connection to %s was back", vm.Host)
	case res != err:
		return res, ""
	case c.targetLost(ctx, vm, it.Target):
		return &targetLostError{host: it.Target, err: err}, ""
	}
	return err, ""
}

// awaitSource handles a migration step that failed with err: when the
// driver sees the source host not connected, the step waits for the
// connection and then for the inventory to show the VM in one place. It
// returns err itself when the failure counts (the connection is up, the
// host was declared dead, the wait ran out), a *sourceLostError when the
// VM is still on its host, and done when the VM is on the target.
func (c *Controller) awaitSource(ctx context.Context, op *cluster.Operation, it cluster.OpItem, vm *cluster.VM, err error) (res error, done bool) {
	d, derr := c.d.Drivers.Get(ctx, vm.Driver)
	if derr != nil {
		return err, false
	}
	health := func() cluster.Health {
		var hl cluster.Health
		c.d.State.Read(func(st *cluster.State) {
			if h := st.Hosts[vm.Host]; h != nil {
				hl = h.Health
			}
		})
		return hl
	}
	probe := func() cluster.Connection {
		pctx, cancel := context.WithTimeout(ctx, targetProbeTimeout)
		defer cancel()
		conn, perr := d.ProbeHost(pctx, vm.Host)
		if perr != nil {
			return cluster.NotResponding // the driver cannot reach it either
		}
		return cluster.Connection(conn)
	}
	bound := c.d.Policy().Maintenance.MigrationTimeout
	conn := probe()
	if ctx.Err() != nil || policy.WaitForSource(health(), conn, 0, bound) != policy.SourceWaiting {
		return err, false
	}
	start := time.Now()
	c.d.Log.Warn("migration failed while its source is not connected: waiting for the connection", "op", op.ID, "vm", vm.Name, "host", vm.Host, "connection", conn, "err", err)
	c.apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{stepEvent(op, it, vm.Host, it.Target, "step.waiting",
		"%s VM %s to %s failed while the connection to its host %s is %s: the attempt is not counted yet; the step waits for the connection (at most maintenance.migration_timeout, %s, or until %s is declared dead, when the attempt counts and the recovery rules apply), then the inventory tells whether the VM moved before it is tried again: %v",
		it.Action, vm.Name, it.Target, vm.Host, conn, bound, vm.Host, err)}})
	tick := time.NewTicker(sourcePoll)
	defer tick.Stop()
	next := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
			return true
		}
	}
	// The connection first.
	for {
		if !next() {
			return err, false
		}
		switch policy.WaitForSource(health(), probe(), time.Since(start), bound) {
		case policy.SourceReady:
		case policy.SourceWaiting:
			continue
		default:
			return err, false
		}
		break
	}
	// Then where the VM is: a migration whose outcome was unknown may
	// still be under way (a copy on each host), or have ended either way.
	for {
		if inv := c.inventory(ctx, vm.Driver); inv != nil {
			copies := inv.Copies(vm.ID)
			switch {
			case len(copies) == 0:
				return err, false
			case resumeVerdict(it, copies) == resumeDone:
				return nil, true
			case len(copies) == 1 && copies[0].Host == vm.Host:
				return &sourceLostError{host: vm.Host, conn: conn, waited: time.Since(start), err: err}, false
			}
		}
		if time.Since(start) >= bound || !next() {
			return err, false
		}
	}
}

// sourceLost reports whether a step's failure was its source's
// connection's, which finish records as not counted.
func sourceLost(err error) (*sourceLostError, bool) {
	var lost *sourceLostError
	ok := errors.As(err, &lost)
	return lost, ok
}
