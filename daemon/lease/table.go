// Package lease is the leader's memory of the host agents: when each
// agent last renewed its lease, last sent a heartbeat, and says it
// started. Nothing of it is written to raft; a new leader starts afresh
// (Reset), which only ever makes it wait longer.
package lease

import (
	"sync"
	"time"

	"github.com/herd-project/herd/daemon/api"
)

// Table is the leader's memory of when each host's agent last renewed
// its lease. Renewals are not written to raft (an agent renews every few
// seconds); instead a new leader counts every armed lease as renewed the
// moment it took over, which only ever makes it wait longer:
//
//	agent:  lease ends at send + TTL (its own monotonic clock)
//	leader: lease counts as expired at max(receipt, leadership) + TTL + margin
//
// receipt follows send, and a renewal answered by an old leader was
// answered before the new leader's term began (the old one verified its
// leadership with a quorum first), so the leader's deadline is never
// earlier than the agent's. The margin covers clock rate drift and the
// agent's time to stop its VMs.
//
// Heartbeats (api.HeartbeatEvery, sent by the agent) are the direct
// liveness path of a host's agent; gossip stays for membership, discovery
// and the partition view, and speaks for agents the leader has not heard a
// heartbeat from in its term.
type Table struct {
	mu      sync.Mutex
	since   time.Time // leadership gained
	renewed map[string]time.Time
	// beats: when each host's agent last sent a heartbeat.
	beats map[string]time.Time
	// starts: when each host's agent says it started.
	starts map[string]time.Time
}

// New is an empty table.
func New() *Table { return &Table{renewed: map[string]time.Time{}} }

// Reset starts a leadership term at now. Heartbeats received less than
// api.HeartbeatLost before it are kept: raft makes a server leader (and
// its API records the beats agents send it) a moment before its
// controllers start and reset the table, and forgetting the agents'
// first beats to the new leader would only hand them back to gossip.
func (l *Table) Reset(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	beats := map[string]time.Time{}
	for h, t := range l.beats {
		if now.Sub(t) < api.HeartbeatLost {
			beats[h] = t
		}
	}
	l.since, l.renewed, l.beats = now, map[string]time.Time{}, beats
}

// Renew records a renewal of host's lease received at now.
func (l *Table) Renew(host string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.renewed[host] = now
}

// Forget drops host's lease and heartbeats (its agent released the lease).
func (l *Table) Forget(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.renewed, host)
	delete(l.beats, host)
}

// Last returns when host's lease was last renewed, as far as this leader
// may assume: never before it took over.
func (l *Table) Last(host string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.since
	if r, ok := l.renewed[host]; ok && r.After(t) {
		t = r
	}
	return t
}

// Deadline is when host's lease counts as expired on the leader.
func (l *Table) Deadline(host string, ttl, margin time.Duration) time.Time {
	return l.Last(host).Add(ttl + margin)
}

// Beat records a heartbeat from host's agent at now.
func (l *Table) Beat(host string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.beats == nil {
		l.beats = map[string]time.Time{}
	}
	l.beats[host] = now
}

// AgentStart records when host's agent says it started (zero: an agent
// that does not say).
func (l *Table) AgentStart(host string, started time.Time) {
	if started.IsZero() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.starts == nil {
		l.starts = map[string]time.Time{}
	}
	l.starts[host] = started
}

// AgentStarted is when host's agent last said it started, zero when this
// leader has not heard it say: a change means the agent restarted.
func (l *Table) AgentStarted(host string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.starts[host]
}

// Heard says whether host's agent has sent this leader a heartbeat in its
// term (known) and whether the last one is under api.HeartbeatLost old.
func (l *Table) Heard(host string, now time.Time) (known, fresh bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.beats[host]
	return ok, ok && now.Sub(t) < api.HeartbeatLost
}
