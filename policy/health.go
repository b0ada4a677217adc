package policy

import (
	"time"

	"github.com/herd-project/herd/cluster"
)

// HealthSignals is what Herd hears about one host right now.
type HealthSignals struct {
	// Connected: the hypervisor manager (vCenter, the host's libvirtd)
	// reports the host connected.
	Connected bool
	// Agent is the state of the host's agent: "" when it runs none (or
	// stopped cleanly), "alive" while its heartbeats reach the leader (or,
	// before the leader heard one, while gossip holds it alive), "silent"
	// when its heartbeats stopped though gossip still lists it, "dead" when
	// gossip declared it dead while it held a lease.
	Agent string
	// HypervisorDown: the agent says its local hypervisor is not running.
	HypervisorDown bool
	// MetricsDown: the policy's Prometheus down_query lists the host.
	MetricsDown bool
	// LeaseExpired: the host's agent held a lease and has not renewed it
	// for its TTL plus the margin: it cannot reach the servers, and it has
	// stopped the host's VMs. Such a host is dead even if it still answers
	// gossip through other hosts.
	LeaseExpired bool
}

// bad reports whether the signals say something is wrong.
func (s HealthSignals) bad() bool {
	return !s.Connected || s.HypervisorDown || s.MetricsDown || s.LeaseExpired || (s.Agent != "" && s.Agent != "alive")
}

// HealthTrack is a host's fused health and since when its signals have
// been bad or good.
type HealthTrack struct {
	Health    cluster.Health
	BadSince  time.Time
	GoodSince time.Time
	// LostSince is since when neither path has answered: the manager lost
	// the host and its agent (if it runs one) is not alive in gossip.
	LostSince time.Time
	// Returned: a fenced host's signals have been good for alive_after —
	// it is back (rebooted, or the partition healed).
	Returned bool
}

// FuseHealth moves a host's health on by its signals at now, pure:
//   - bad signals for suspect_after make it suspect; it is dead once
//     neither path has answered for dead_after: the manager lost the host
//     and its agent (if it runs one) does not answer gossip, both all that
//     time. One lost path is not a death (the manager's link, or the agent
//     alone, may be down while the host runs), nor are the two lost one
//     after the other: the host stays suspect — unless its agent's lease
//     expired (and the signals were bad for dead_after): the agent stopped
//     the VMs, and the host is dead to Herd;
//   - good signals for alive_after bring a suspect or dead host back to
//     alive (a flap shorter than that changes nothing);
//   - fenced is sticky: the health stays fenced, and Returned turns true
//     once the signals have been good for alive_after (the caller records
//     the host's return, which brings it back NOT_ACCEPTING).
func FuseHealth(prev HealthTrack, sig HealthSignals, now time.Time, p HealthPolicy) HealthTrack {
	t := prev
	if t.Health == "" {
		t.Health = cluster.HealthUnknown
	}
	if t.Health == cluster.HealthFenced {
		if sig.bad() {
			t.GoodSince, t.Returned = time.Time{}, false
			return t
		}
		if t.GoodSince.IsZero() {
			t.GoodSince = now
		}
		t.Returned = now.Sub(t.GoodSince) >= p.AliveAfter
		return t
	}
	if sig.Agent != "alive" && !sig.Connected {
		if t.LostSince.IsZero() {
			t.LostSince = now
		}
	} else {
		t.LostSince = time.Time{}
	}
	if sig.bad() {
		t.GoodSince = time.Time{}
		if t.BadSince.IsZero() {
			t.BadSince = now
		}
		bad := now.Sub(t.BadSince)
		switch {
		case bad >= p.DeadAfter && sig.LeaseExpired,
			!t.LostSince.IsZero() && now.Sub(t.LostSince) >= p.DeadAfter:
			t.Health = cluster.HealthDead
		case bad >= p.SuspectAfter && t.Health != cluster.HealthDead:
			t.Health = cluster.HealthSuspect
		}
		return t
	}
	t.BadSince = time.Time{}
	if t.GoodSince.IsZero() {
		t.GoodSince = now
	}
	switch t.Health {
	case cluster.HealthUnknown, cluster.HealthAlive:
		t.Health = cluster.HealthAlive
	default: // suspect, dead
		if now.Sub(t.GoodSince) >= p.AliveAfter {
			t.Health = cluster.HealthAlive
		}
	}
	return t
}
