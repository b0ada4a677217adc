package daemon

import (
	"context"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/agent"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/controller/health"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

func TestAgentSignal(t *testing.T) {
	for _, tc := range []struct {
		gossip       string
		known, fresh bool
		want         string
	}{
		{"alive", false, false, "alive"}, // no heartbeat heard this term: gossip speaks
		{"dead", false, false, "dead"},
		{"", false, false, ""},
		{"alive", true, true, "alive"},
		{"dead", true, true, "alive"}, // gossip cut, heartbeats arrive
		{"", true, true, "alive"},
		{"alive", true, false, "silent"}, // heartbeats stopped: lost without waiting for gossip
		{"dead", true, false, "dead"},
		{"", true, false, ""}, // left gossip cleanly: no agent, as before
	} {
		if got := health.AgentSignal(tc.gossip, tc.known, tc.fresh); got != tc.want {
			t.Errorf("AgentSignal(%q, known %v, fresh %v) = %q, want %q", tc.gossip, tc.known, tc.fresh, got, tc.want)
		}
	}
}

// heartbeatPolicy: quick thresholds, and a lease far longer than the test
// so that its expiry decides nothing.
func heartbeatPolicy(p *policy.Document) {
	p.Health = policy.HealthPolicy{SuspectAfter: 500 * time.Millisecond, DeadAfter: 2 * time.Second, AliveAfter: time.Second}
	p.Recovery.LeaseTTL = time.Minute
}

// waitHeartbeats waits until the leader hears host's agent's heartbeats.
func waitHeartbeats(t *testing.T, dev *DevServer, host string) {
	t.Helper()
	testutil.WaitFor(t, 15*time.Second, "heartbeats from "+host, func() bool {
		_, fresh := dev.leases.Heard(host, time.Now())
		return fresh
	})
}

func gossipAlive(dev *DevServer, name string) bool {
	for _, m := range dev.gossip.Members() {
		if m.Name == name && m.State == "alive" {
			return true
		}
	}
	return false
}

// TestHeartbeatsStoppedHostDead: a host whose manager loses it and whose
// agent's heartbeats stop is dead within heartbeatLost plus dead_after,
// while gossip still holds its agent alive: death does not wait for gossip.
func TestHeartbeatsStoppedHostDead(t *testing.T) {
	dev, c := startDevWith(t, 3, 3, nil, heartbeatPolicy)
	ctx := context.Background()
	host := dev.Sim.HostNames()[0]
	var apiCut atomic.Bool
	a := startAgentWith(t, dev, host, filepath.Join(t.TempDir(), "lease.json"), func(o *agent.Options) {
		o.Transport = lossyRoundTripper{out: apiCut.Load, next: http.DefaultTransport}
	})
	waitHeartbeats(t, dev, host)
	testutil.WaitFor(t, 15*time.Second, "host alive", func() bool {
		h, _ := c.Host(ctx, host)
		return h != nil && h.Health == api.HealthAlive
	})
	if err := dev.Sim.SetHostConnection(host, drivers.NotResponding); err != nil {
		t.Fatal(err)
	}
	apiCut.Store(true) // the API path: heartbeats (and renewals) stop; gossip runs on
	cut := time.Now()
	// dead_after once both paths are lost, plus a health round and a
	// probe's timeout on a loaded machine.
	within := api.HeartbeatLost + 2*time.Second + 2*time.Second
	var dead *api.Host
	testutil.WaitFor(t, within, "host dead", func() bool {
		h, _ := c.Host(ctx, host)
		if h != nil && (h.Health == api.HealthDead || h.Health == api.HealthFenced) {
			dead = h
			return true
		}
		return false
	})
	if !gossipAlive(dev, a.name) {
		t.Errorf("gossip no longer holds the agent alive %s after the cut: the test proves nothing", time.Since(cut))
	}
	if d := time.Since(cut); d < 2*time.Second {
		t.Errorf("dead %s after the cut, before dead_after (2s)", d)
	}
	t.Logf("dead %s after the cut (%s)", time.Since(cut).Round(10*time.Millisecond), dead.Health)
}

// TestHeartbeatsKeepHostFromDeathWhileGossipCut: a host whose manager
// loses it and whose agent gossip declares dead, while the agent's
// heartbeats still arrive, is never declared dead.
func TestHeartbeatsKeepHostFromDeathWhileGossipCut(t *testing.T) {
	dev, c := startDevWith(t, 3, 3, nil, heartbeatPolicy)
	ctx := context.Background()
	host := dev.Sim.HostNames()[0]
	var cut atomic.Bool
	a := startAgentWith(t, dev, host, filepath.Join(t.TempDir(), "lease.json"), func(o *agent.Options) { o.GossipDrop = cut.Load })
	waitHeartbeats(t, dev, host)
	testutil.WaitFor(t, 15*time.Second, "host alive", func() bool {
		h, _ := c.Host(ctx, host)
		return h != nil && h.Health == api.HealthAlive
	})
	if err := dev.Sim.SetHostConnection(host, drivers.NotResponding); err != nil {
		t.Fatal(err)
	}
	cut.Store(true)
	start := time.Now()
	var gone time.Time
	for time.Since(start) < 20*time.Second {
		h, err := c.Host(ctx, host)
		if err != nil {
			t.Fatal(err)
		}
		if h.Health == api.HealthDead || h.Health == api.HealthFenced {
			t.Fatalf("host %s %s after gossip was cut, its heartbeats arriving", h.Health, time.Since(start))
		}
		if gone.IsZero() && !gossipAlive(dev, a.name) {
			gone = time.Now()
		}
		if !gone.IsZero() && time.Since(gone) > 2*2*time.Second {
			return // gossip declared the agent dead, and dead_after passed twice
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("gossip never declared the agent dead in 20s (gone %v): the test proves nothing", gone)
}
