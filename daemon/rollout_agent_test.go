package daemon

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
)

// TestRolloutWaitEndsWhenTheAgentRestarts: a host waiting in its rollout
// work whose agent restarts (as it does when the host reboots) has done its
// work: the rollout brings it back without herd rollout continue.
func TestRolloutWaitEndsWhenTheAgentRestarts(t *testing.T) {
	dev, c := startDevWith(t, 2, 4, nil, rolloutPolicy())
	host := dev.Sim.HostNames()[0]
	state := filepath.Join(t.TempDir(), "agent.state")
	a := startAgent(t, dev, host, state)
	ctx := context.Background()
	r, err := c.StartRollout(ctx, api.RolloutRequest{Hosts: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	// The host says what it waits for once the controller has looked at it
	// (and at its agent's start).
	waitRollout(t, c, r.ID, 30*time.Second, host+" waiting in its work", func(r *api.Rollout) bool {
		return phaseOf(r, host) == "working" && strings.Contains(r.Hosts[0].Note, "agent's restart")
	})
	if dev.leases.AgentStarted(host).IsZero() {
		t.Fatal("the leader has no start time of the agent")
	}
	a.stop()
	startAgent(t, dev, host, state)
	r = waitRollout(t, c, r.ID, 30*time.Second, "rollout to end", ended)
	if r.State != "succeeded" || r.Hosts[0].Continued {
		t.Fatalf("rollout: %+v", r)
	}
	if !hasEvent(queryEvents(t, c, api.EventQuery{Operation: r.ID}), "rollout.host_back", "agent of host "+host+" restarted") {
		t.Error("no event says the agent restarted")
	}
}
