package lease

import (
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
)

// TestNewLeaderCountsLeasesFromItsTerm: a leader never counts a lease as
// renewed before its own term began, and a renewal in its term moves the
// deadline; a released lease counts from the term again.
func TestNewLeaderCountsLeasesFromItsTerm(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	ttl, margin := 10*time.Second, 2*time.Second
	l := New()
	l.Renew("h1", t0.Add(-time.Minute)) // heard by this server before it led
	l.Reset(t0)
	if got, want := l.Deadline("h1", ttl, margin), t0.Add(ttl+margin); !got.Equal(want) {
		t.Fatalf("deadline after a new term = %s, want %s (counted from the term)", got, want)
	}
	l.Renew("h1", t0.Add(5*time.Second))
	if got, want := l.Deadline("h1", ttl, margin), t0.Add(5*time.Second+ttl+margin); !got.Equal(want) {
		t.Fatalf("deadline after a renewal = %s, want %s", got, want)
	}
	l.Renew("h1", t0.Add(-time.Second)) // a renewal dated before the term
	if got := l.Last("h1"); !got.Equal(t0) {
		t.Fatalf("last = %s, want the term's start %s", got, t0)
	}
	l.Forget("h1")
	if got := l.Last("h1"); !got.Equal(t0) {
		t.Fatalf("last after forget = %s, want the term's start %s", got, t0)
	}
}

// TestHeartbeatsAreKnownOnlyInTheTerm: a heartbeat is known until the
// next term (unless it came less than api.HeartbeatLost before it), fresh
// for api.HeartbeatLost; an agent's start time survives
// a new term (it says when the agent restarted).
func TestHeartbeatsAreKnownOnlyInTheTerm(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	l := New()
	if known, _ := l.Heard("h1", t0); known {
		t.Fatal("an agent never heard is known")
	}
	l.Beat("h1", t0)
	l.AgentStart("h1", t0.Add(-time.Hour))
	l.AgentStart("h1", time.Time{}) // an agent that does not say changes nothing
	if known, fresh := l.Heard("h1", t0.Add(api.HeartbeatLost-time.Millisecond)); !known || !fresh {
		t.Fatalf("heard = %v, %v just under HeartbeatLost; want known and fresh", known, fresh)
	}
	if known, fresh := l.Heard("h1", t0.Add(api.HeartbeatLost)); !known || fresh {
		t.Fatalf("heard = %v, %v at HeartbeatLost; want known, not fresh", known, fresh)
	}
	l.Reset(t0.Add(time.Minute))
	if known, _ := l.Heard("h1", t0.Add(time.Minute)); known {
		t.Fatal("a heartbeat from an earlier term is known")
	}
	// A beat the server recorded as it became leader, just before its
	// controllers reset the table, stays known (and fresh while it is).
	l.Beat("h1", t0.Add(2*time.Minute))
	l.Reset(t0.Add(2*time.Minute + api.HeartbeatEvery))
	if known, fresh := l.Heard("h1", t0.Add(2*time.Minute+api.HeartbeatEvery)); !known || !fresh {
		t.Fatalf("heard = %v, %v for a beat just before the term; want known and fresh", known, fresh)
	}
	if got := l.AgentStarted("h1"); !got.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("agent started = %s, want %s", got, t0.Add(-time.Hour))
	}
}
