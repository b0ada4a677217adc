package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/agent"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/drivers/vsphere"
	"github.com/herd-project/herd/internal/testutil"
)

// heartbeatFollowBound is how soon after a new leader is elected it hears
// the agents' heartbeats: a beat tries the old leader, then the servers
// in turn (a follower forwards to the leader), within api.HeartbeatLost;
// the next beat comes api.HeartbeatEvery later.
const heartbeatFollowBound = api.HeartbeatLost + 2*api.HeartbeatEvery

// TestAgentHeartbeatsFollowANewLeader: three servers and a host's agent
// that knows them all; the leader is killed. The new leader hears the
// agent's heartbeats within heartbeatFollowBound of its election and keeps
// hearing them; the agent's host is neither suspected nor declared dead
// nor fenced, before or after the change.
func TestAgentHeartbeatsFollowANewLeader(t *testing.T) {
	sim, err := vsphere.StartSimulator(vsphere.SimConfig{Hosts: 3, VMs: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	tc := newTestCluster(t, 3, sim)
	leader := tc.leader()
	waitInventory(t, tc.client(leader), 3, 3)
	host := sim.HostNames()[0]

	// The agent, told every server's API; gossip joins them all.
	hv, err := vsphere.New(context.Background(), sim.Config(), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Agent{NodeName: "agent-" + host, Host: host, StateFile: t.TempDir() + "/lease.json"}
	for i, s := range tc.servers {
		cfg.Servers = append(cfg.Servers, s.APIAddr())
		cfg.Gossip.Join = append(cfg.Gossip.Join, tc.cfgs[i].Gossip.Listen)
	}
	cfg.Gossip.Listen, cfg.Gossip.KeyringFile = "127.0.0.1:0", tc.cfgs[0].Gossip.KeyringFile
	cfg.ApplyDefaults()
	a, err := agent.New(cfg, agent.Options{Logger: testutil.Logger(t), Hypervisor: hv, GossipFast: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(ctx); err != nil {
			t.Errorf("agent: %v", err)
		}
	}()
	defer func() { cancel(); <-done }()

	heard := func(s *Server) bool {
		known, fresh := s.leases.Heard(host, time.Now())
		return known && fresh
	}
	testutil.WaitFor(t, 20*time.Second, "the leader to hear the agent and see the host alive", func() bool {
		leader = tc.leader() // it may still move as the cluster forms
		h, err := tc.client(leader).Host(context.Background(), host)
		return heard(tc.servers[leader]) && err == nil && h.Health == api.HealthAlive && a.Status().Armed
	})

	tc.stop(leader)
	killed := time.Now()
	next := tc.leader()
	elected := time.Now()
	s := tc.servers[next]
	testutil.WaitFor(t, 10*time.Second, "the new leader to hear the agent", func() bool { return heard(s) })
	t.Logf("leader %s killed; %s leads %s later and hears the agent %s after that",
		tc.cfgs[leader].NodeName, tc.cfgs[next].NodeName, elected.Sub(killed).Round(time.Millisecond), time.Since(elected).Round(time.Millisecond))
	if d := time.Since(elected); d > heartbeatFollowBound {
		t.Errorf("the new leader heard the agent %s after it was found elected, want within %s", d.Round(time.Millisecond), heartbeatFollowBound)
	}

	// Whoever leads keeps hearing it (raft may move leadership once more
	// while the two survivors settle: each leader gets the same bound),
	// for longer than suspect_after and dead_after (dev policy: 1 s and
	// 3 s), and health agrees.
	c := tc.client(next)
	p := s.Policy().Health
	watch := time.Now()
	current, since := next, elected
	missed := 0
	for time.Since(watch) < p.DeadAfter+p.SuspectAfter {
		lead := -1
		for i, o := range tc.servers {
			if o != nil && o.Node().IsLeader() {
				lead = i
			}
		}
		if lead != current {
			current, since = lead, time.Now()
			t.Logf("leadership moved to %d", lead)
		}
		if lead >= 0 && time.Since(since) > heartbeatFollowBound && !heard(tc.servers[lead]) {
			missed++
		}
		h, err := c.Host(context.Background(), host)
		if err == nil && h.Health != api.HealthAlive {
			t.Fatalf("host %s is %s %s after the leader was killed", host, h.Health, time.Since(killed).Round(time.Millisecond))
		}
		time.Sleep(api.HeartbeatEvery / 2)
	}
	if missed > 0 {
		t.Errorf("the leader had not heard the agent for %s, %d times while watched", api.HeartbeatLost, missed)
	}
	for _, e := range hostEvents(t, c, host) {
		switch e.Type {
		case "host.health", "host.fenced", "host.fencing_failed", "recovery.started":
			if e.Time.Before(killed) && e.Type == "host.health" && strings.Contains(e.Message, "is alive (was unknown)") {
				continue // its first look
			}
			t.Errorf("event on the agent's host: %s %s: %s", e.Time.Format("15:04:05.000"), e.Type, e.Message)
		}
	}
}
