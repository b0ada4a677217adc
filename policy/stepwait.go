package policy

import (
	"time"

	"github.com/herd-project/herd/cluster"
)

// SourceWait is what a migration step does about the management
// connection to its VM's host (the source): a host whose connection is
// down for a moment (a loaded server, a restarting libvirtd or hostd)
// cannot be migrated from, and trying then only burns the VM's attempts.
type SourceWait int

const (
	// SourceReady: the connection is up; the step is tried now.
	SourceReady SourceWait = iota
	// SourceWaiting: the connection is down; the step waits, and no
	// attempt is counted.
	SourceWaiting
	// SourceDown: the host is declared dead or fenced; waiting ends, the
	// step's failure counts and the recovery rules take over the host.
	SourceDown
	// SourceWaitOver: the connection stayed down for the whole bound; the
	// step is tried (and counted) as usual.
	SourceWaitOver
)

func (w SourceWait) String() string {
	switch w {
	case SourceReady:
		return "ready"
	case SourceWaiting:
		return "waiting"
	case SourceDown:
		return "down"
	case SourceWaitOver:
		return "wait over"
	}
	return "unknown"
}

// WaitForSource decides, for a migration step whose source host has health
// and connection conn now (the driver's own view, or the state's), having
// waited waited so far for the connection: try now, wait (not counted), or
// stop waiting. The wait is bounded by bound (the policy's
// maintenance.migration_timeout: waiting for the connection is part of
// the step), and ends at once when the host is declared dead or fenced.
func WaitForSource(health cluster.Health, conn cluster.Connection, waited, bound time.Duration) SourceWait {
	switch {
	case health == cluster.HealthDead || health == cluster.HealthFenced:
		return SourceDown
	case conn == cluster.Connected || conn == "":
		return SourceReady
	case waited >= bound:
		return SourceWaitOver
	}
	return SourceWaiting
}
