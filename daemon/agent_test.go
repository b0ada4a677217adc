package daemon

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster/gossip"
	"github.com/herd-project/herd/daemon/agent"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/drivers/vsphere"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

// testAgent is an agent for host, whose API traffic goes through a link the
// test can cut, and whose local hypervisor is the dev simulator.
type testAgent struct {
	*agent.Agent
	name   string
	link   *testutil.Link
	cancel context.CancelFunc
	done   chan struct{}
}

func startAgent(t testing.TB, dev *DevServer, host, stateFile string) *testAgent {
	t.Helper()
	return startAgentWith(t, dev, host, stateFile, nil)
}

// startAgentWith is startAgent with options changed by opts.
func startAgentWith(t testing.TB, dev *DevServer, host, stateFile string, opts func(*agent.Options)) *testAgent {
	t.Helper()
	hv, err := vsphere.New(context.Background(), dev.Sim.Config(), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	link := testutil.NewLink(t, strings.TrimPrefix(dev.APIAddr(), "http://"))
	cfg := &config.Agent{NodeName: "agent-" + host, Host: host, Servers: []string{"http://" + link.Addr()}, StateFile: stateFile}
	cfg.Gossip.Listen = "127.0.0.1:0"
	cfg.Gossip.Join = []string{dev.gossip.Addr()}
	cfg.ApplyDefaults()
	o := agent.Options{Logger: testutil.Logger(t), Hypervisor: hv, GossipFast: true}
	if opts != nil {
		opts(&o)
	}
	a, err := agent.New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testAgent{Agent: a, name: cfg.NodeName, link: link, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(ta.done)
		if err := a.Run(ctx); err != nil {
			t.Errorf("agent: %v", err)
		}
	}()
	t.Cleanup(ta.stop)
	return ta
}

func (ta *testAgent) stop() {
	ta.cancel()
	<-ta.done
}

// TestPartitionedHostSelfFencesBeforeRecovery: a host cut off from the
// servers (manager link, agent's API link and gossip) but alive is not
// recreated before its lease ran out; its agent stops its VMs by then; the
// lease is what fences it; afterwards no VM runs twice.
func TestPartitionedHostSelfFencesBeforeRecovery(t *testing.T) {
	ttl := 2 * time.Second
	dev, c := startDevWith(t, 3, 9, nil, func(p *policy.Document) {
		fastRecovery(p)
		p.Recovery.LeaseTTL, p.Recovery.LeaseMargin = ttl, time.Second
		p.Recovery.Fencing = []policy.FenceMethod{{Name: "lease", Type: policy.FenceLease}}
	})
	ctx := context.Background()
	victim := busiestHost(t, c).Name
	a := startAgent(t, dev, victim, filepath.Join(t.TempDir(), "lease.json"))
	testutil.WaitFor(t, 15*time.Second, "lease armed", func() bool {
		h, _ := c.Host(ctx, victim)
		return h != nil && h.LeaseTTL == ttl && a.Status().Armed
	})
	if !hasEvent(hostEvents(t, c, victim), "host.lease", "lease fencing armed") {
		t.Error("no lease event")
	}
	want := running(driverVMs(t, dev.Sim), "")

	// The partition: vCenter loses the host, the agent loses the API and gossip.
	if err := dev.Sim.SetHostConnection(victim, drivers.NotResponding); err != nil {
		t.Fatal(err)
	}
	a.link.Cut()
	if err := a.Gossip().Shutdown(); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	t.Cleanup(func() {
		if t.Failed() {
			h, _ := c.Host(ctx, victim)
			t.Logf("host: %+v", *h)
			for _, e := range hostEvents(t, c, victim) {
				t.Logf("event %s %s: %s", e.Time.Format("15:04:05.000"), e.Type, e.Message)
			}
			for _, m := range dev.gossip.Members() {
				t.Logf("member %+v", m)
			}
		}
	})
	testutil.WaitFor(t, 30*time.Second, "host fenced", func() bool {
		h, _ := c.Host(ctx, victim)
		return h != nil && h.Health == api.HealthFenced
	})
	op := waitRecovery(t, c, victim)

	st := a.Status()
	if !st.Fenced || st.StoppedVMs == 0 {
		t.Fatalf("agent after its lease ran out: %+v", st)
	}
	if st.FencedAt.Sub(cut) > ttl+time.Second {
		t.Errorf("agent self-fenced %s after the cut; its lease was %s", st.FencedAt.Sub(cut), ttl)
	}
	var firstStep time.Time
	for _, e := range opEvents(t, c, op.ID) {
		if e.Type == "step.started" {
			firstStep = e.Time
			break
		}
	}
	if firstStep.IsZero() || !firstStep.After(st.FencedAt) {
		t.Errorf("first recreation at %s, agent self-fenced at %s: recreated before the lease ran out", firstStep, st.FencedAt)
	}
	if firstStep.Sub(cut) < ttl {
		t.Errorf("first recreation %s after the cut, before the %s lease could run out", firstStep.Sub(cut), ttl)
	}
	h, _ := c.Host(ctx, victim)
	if h.FencedBy != policy.FenceLease {
		t.Errorf("fenced by %q, want lease", h.FencedBy)
	}
	got := running(driverVMs(t, dev.Sim), "")
	for name := range want {
		if got[name] != 1 {
			t.Errorf("VM %s runs %d times, want exactly 1", name, got[name])
		}
	}
	m := metricsText(t, dev.Server)
	if !containsLine(m, `herd_fencing_attempts_total{host="`+victim+`",method="lease",result="success"} 1`) {
		t.Errorf("metrics:\n%s", grepLines(m, "fencing"))
	}
	if !strings.Contains(m, "herd_gossip_probe_rtt_seconds_count") {
		t.Errorf("no gossip probe round trips:\n%s", grepLines(m, "herd_gossip_probe"))
	}
	testutil.WaitFor(t, 15*time.Second, "the agent's loss counted", func() bool {
		return !containsLine(metricsText(t, dev.Server), "herd_gossip_probe_failures_total 0")
	})
}

// TestAgentRejoinsAfterLongPartition: an agent cut off from gossip for
// longer than memberlist keeps gossiping to the dead (3 s here) is declared
// dead by the server, and declares the server dead in turn; neither would
// contact the other again. The agent joins again when it sees no server
// alive, so once the cut ends the server sees it alive.
func TestAgentRejoinsAfterLongPartition(t *testing.T) {
	dev, _ := startDevWith(t, 2, 2, nil, fastRecovery)
	host := dev.Sim.HostNames()[0]
	var cut atomic.Bool
	a := startAgentWith(t, dev, host, filepath.Join(t.TempDir(), "lease.json"), func(o *agent.Options) { o.GossipDrop = cut.Load })
	agentAlive := func() bool {
		for _, m := range dev.gossip.Members() {
			if m.Name == a.name && m.State == "alive" {
				return true
			}
		}
		return false
	}
	testutil.WaitFor(t, 15*time.Second, "the agent in the server's pool", agentAlive)
	cut.Store(true)
	testutil.WaitFor(t, 15*time.Second, "the agent declared dead by the server", func() bool { return !agentAlive() })
	testutil.WaitFor(t, 15*time.Second, "the server declared dead by the agent", func() bool {
		return !gossip.OtherServerAlive(a.Gossip().Members(), a.name)
	})
	time.Sleep(4 * time.Second) // past GossipToTheDeadTime on both sides
	cut.Store(false)
	testutil.WaitFor(t, 15*time.Second, "the agent alive in the server's pool again", agentAlive)
}

// TestAgentLeaseRelease: an agent that stops cleanly releases its lease:
// lease expiry no longer fences the host, and its VMs keep running.
func TestAgentLeaseRelease(t *testing.T) {
	dev, c := startDevWith(t, 2, 2, nil, func(p *policy.Document) {
		p.Recovery.LeaseTTL = 2 * time.Second
	})
	ctx := context.Background()
	host := dev.Sim.HostNames()[0]
	state := filepath.Join(t.TempDir(), "lease.json")
	a := startAgent(t, dev, host, state)
	testutil.WaitFor(t, 15*time.Second, "lease armed", func() bool {
		h, _ := c.Host(ctx, host)
		return h != nil && h.LeaseTTL > 0
	})
	a.stop()
	h, _ := c.Host(ctx, host)
	if h.LeaseTTL != 0 {
		t.Errorf("lease still armed after a clean stop: %s", h.LeaseTTL)
	}
	if st := a.Status(); st.Fenced || st.Armed {
		t.Errorf("agent after a clean stop: %+v", st)
	}
	for _, v := range driverVMs(t, dev.Sim) {
		if v.Host == host && v.Power == drivers.PoweredOn {
			return
		}
	}
	t.Error("a clean stop stopped the host's VMs")
}

// TestAgentRestartAfterLeaseRanOut: an agent that comes back after its
// lease ran out (it was down, nobody renewed) stops the host's VMs before
// anything else.
func TestAgentRestartAfterLeaseRanOut(t *testing.T) {
	dev, c := startDevWith(t, 2, 4, nil, func(p *policy.Document) {
		p.Recovery.LeaseTTL = 2 * time.Second
		p.Recovery.Automatic = false
	})
	ctx := context.Background()
	host := busiestHost(t, c).Name
	state := filepath.Join(t.TempDir(), "lease.json")
	a := startAgent(t, dev, host, state)
	testutil.WaitFor(t, 15*time.Second, "lease armed", func() bool { return a.Status().Armed && a.Status().Remaining > 0 })
	// Cut off from every server, it is stopped: it cannot release its
	// lease, so it stops the VMs (its state file stays armed).
	a.link.Cut()
	if err := a.Gossip().Shutdown(); err != nil {
		t.Fatal(err)
	}
	a.cancel()
	<-a.done
	if !a.Status().Fenced {
		t.Fatal("an agent stopped while cut off must stop its VMs")
	}
	// Start the VMs again behind its back, let the lease run out, restart.
	hv, err := vsphere.New(ctx, dev.Sim.Config(), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer hv.Close()
	restarted := 0
	for _, v := range driverVMs(t, dev.Sim) {
		if v.Host == host {
			if err := hv.PowerOn(ctx, v.ID); err == nil {
				restarted++
			}
		}
	}
	if restarted == 0 {
		t.Fatal("no VM to start again")
	}
	time.Sleep(2500 * time.Millisecond)
	b := startAgent(t, dev, host, state)
	testutil.WaitFor(t, 10*time.Second, "restarted agent self-fences", func() bool { return b.Status().StoppedVMs >= restarted })
	for _, v := range driverVMs(t, dev.Sim) {
		if v.Host == host && v.Power == drivers.PoweredOn {
			t.Errorf("VM %s runs on %s after the restarted agent found its lease out", v.Name, host)
		}
	}
}
