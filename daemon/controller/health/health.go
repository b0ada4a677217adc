// Package health is the leader's health controller: it fuses each host's
// signals (its manager's connection, probes, its agent's gossip state,
// heartbeats and lease, Prometheus queries) into the host's health with
// policy.FuseHealth, and records each change in raft.
package health

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/gossip"
	"github.com/herd-project/herd/daemon/controller"
	"github.com/herd-project/herd/internal/ctxsleep"
	"github.com/herd-project/herd/metrics"
	"github.com/herd-project/herd/policy"
)

// Leases is the leader's memory of agents' leases and heartbeats.
type Leases interface {
	// Deadline is when host's lease counts as expired on the leader.
	Deadline(host string, ttl, margin time.Duration) time.Time
	// Heard says whether host's agent sends heartbeats (known) and
	// whether the last one is recent (fresh).
	Heard(host string, now time.Time) (known, fresh bool)
}

// Deps are what the health controller works with.
type Deps struct {
	State   controller.State
	Raft    controller.Applier
	Drivers controller.Drivers
	Leases  Leases
	// Policy is the policy in force.
	Policy func() *policy.Document
	// Gossip lists the gossip pool as this server sees it.
	Gossip func() []gossip.Member
	// HostQuery runs a Prometheus query, its value by host.
	HostQuery func(ctx context.Context, src *policy.PrometheusSource, name, query string, st *cluster.State) (map[string]float64, error)
	// Evacuate sends a degraded host into maintenance.
	Evacuate func(ctx context.Context, host, why string) error
	Metrics  *metrics.Metrics
	Log      *slog.Logger
}

// Controller fuses, on the leader, each host's signals — its
// hypervisor manager's connection state (from inventory sync) and its
// agent's gossip state when it runs one — into the host's health, with the
// policy's thresholds. Timers live in memory: a new leader starts them
// afresh, which only ever delays a verdict.
type Controller struct {
	d Deps

	mu     sync.Mutex
	probes map[string]probeResult
	// down and degraded are the hosts the policy's Prometheus queries
	// returned last, and when.
	down, degraded map[string]bool
	promAt         time.Time
	evacuated      map[string]bool // degraded hosts already sent to maintenance
}

// probeResult is a driver probe's answer about one host.
type probeResult struct {
	conn cluster.Connection
	at   time.Time
}

// New is the health controller.
func New(d Deps) *Controller { return &Controller{d: d} }

// Name names the controller in logs.
func (c *Controller) Name() string { return "health" }

// probeEvery is how often the drivers are asked about every host: a
// quarter of suspect_after (so detection does not wait for inventory
// sync), between 200 ms and 2 s.
func probeEvery(p policy.HealthPolicy) time.Duration {
	return min(max(p.SuspectAfter/4, 200*time.Millisecond), 2*time.Second)
}

// Run fuses the signals until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.mu.Lock()
	c.probes, c.down, c.degraded, c.evacuated = map[string]probeResult{}, nil, nil, map[string]bool{}
	c.mu.Unlock()
	go c.probeLoop(ctx)
	go c.promLoop(ctx)
	tracks := map[string]policy.HealthTrack{}
	for ctx.Err() == nil {
		c.round(ctx, tracks, time.Now().UTC())
		ctxsleep.Sleep(ctx, min(probeEvery(c.d.Policy().Health), 500*time.Millisecond))
	}
}

// probeLoop asks each host's driver how the host is, on its own clock.
func (c *Controller) probeLoop(ctx context.Context) {
	for ctx.Err() == nil {
		every := probeEvery(c.d.Policy().Health)
		var hosts []*cluster.Host
		c.d.State.Read(func(st *cluster.State) {
			for _, h := range st.Hosts {
				hosts = append(hosts, h)
			}
		})
		sem := make(chan struct{}, 16)
		var wg sync.WaitGroup
		for _, h := range hosts {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				conn := c.probe(ctx, h, every)
				if conn == "" {
					return
				}
				c.mu.Lock()
				c.probes[h.Name] = probeResult{conn: conn, at: time.Now()}
				c.mu.Unlock()
			}()
		}
		wg.Wait()
		ctxsleep.Sleep(ctx, every)
	}
}

// probe asks h's driver; a call that fails or times out means the host
// does not respond. "" when nothing can be said (no driver, shutting down).
func (c *Controller) probe(ctx context.Context, h *cluster.Host, every time.Duration) cluster.Connection {
	d, err := c.d.Drivers.Get(ctx, h.Driver)
	if err != nil {
		return ""
	}
	tctx, cancel := context.WithTimeout(ctx, max(every, time.Second))
	defer cancel()
	conn, err := d.ProbeHost(tctx, h.Name)
	switch {
	case ctx.Err() != nil:
		return ""
	case err != nil:
		return cluster.NotResponding
	}
	return cluster.Connection(conn)
}

// promEvery is how often the policy's Prometheus health queries run.
const promEvery = 5 * time.Second

// promLoop asks Prometheus which hosts look down and which degraded; a
// degraded host is evacuated through maintenance, once while it stays so.
func (c *Controller) promLoop(ctx context.Context) {
	for ctx.Err() == nil {
		doc := c.d.Policy()
		src, hp := doc.MetricSources.Prometheus, doc.Health
		if src != nil && (hp.DownQuery != "" || hp.DegradedQuery != "") {
			st := c.d.State.State()
			down, derr := c.hostSet(ctx, src, "down_query", hp.DownQuery, st)
			degraded, gerr := c.hostSet(ctx, src, "degraded_query", hp.DegradedQuery, st)
			c.mu.Lock()
			if derr == nil && gerr == nil {
				c.down, c.degraded, c.promAt = down, degraded, time.Now()
			}
			for h := range c.evacuated {
				if !degraded[h] {
					delete(c.evacuated, h)
				}
			}
			var todo []string
			for h := range degraded {
				if !c.evacuated[h] {
					todo = append(todo, h)
					c.evacuated[h] = true
				}
			}
			c.mu.Unlock()
			for _, h := range todo {
				if err := c.d.Evacuate(ctx, h, "degraded_query "+hp.DegradedQuery); err != nil {
					c.d.Log.Warn("evacuate degraded host", "host", h, "err", err)
				}
			}
		}
		ctxsleep.Sleep(ctx, promEvery)
	}
}

// hostSet runs one query: the hosts it returns a sample for (an empty
// query returns none). Errors are counted and logged.
func (c *Controller) hostSet(ctx context.Context, src *policy.PrometheusSource, name, query string, st *cluster.State) (map[string]bool, error) {
	out := map[string]bool{}
	if query == "" {
		return out, nil
	}
	vals, err := c.d.HostQuery(ctx, src, name, query, st)
	if err != nil {
		c.d.Metrics.MetricSourceErrors.WithLabelValues("prometheus").Inc()
		c.d.Log.Warn("health query failed", "query", name, "err", err)
		return nil, err
	}
	for h := range vals {
		out[h] = true
	}
	return out, nil
}

// metricsDown reports whether the down query (fresh) lists h.
func (c *Controller) metricsDown(h string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down[h] && time.Since(c.promAt) < 3*promEvery
}

// connection is the freshest word on h's management connection: a recent
// probe, else what inventory sync last saw.
func (c *Controller) connection(h *cluster.Host, now time.Time, every time.Duration) cluster.Connection {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.probes[h.Name]; ok && now.Sub(p.at) < 3*every+time.Second {
		return p.conn
	}
	return h.Connection
}

func (c *Controller) round(ctx context.Context, tracks map[string]policy.HealthTrack, now time.Time) {
	// The hosts only (values are immutable): no copy of the VM maps.
	var hosts []*cluster.Host
	c.d.State.Read(func(st *cluster.State) {
		for _, name := range st.HostNames() {
			hosts = append(hosts, st.Hosts[name])
		}
	})
	p := c.d.Policy().Health
	agents := map[string]gossip.Member{}
	for _, m := range c.d.Gossip() {
		if m.Meta.Role == gossip.RoleAgent && m.Meta.Host != "" {
			agents[m.Meta.Host] = m
		}
	}
	present := make(map[string]bool, len(hosts))
	every := probeEvery(p)
	for _, h := range hosts {
		name := h.Name
		present[name] = true
		conn := c.connection(h, time.Now(), every)
		sig := policy.HealthSignals{Connected: conn == cluster.Connected, MetricsDown: c.metricsDown(name)}
		if h.LeaseTTL > 0 {
			sig.LeaseExpired = !time.Now().Before(c.d.Leases.Deadline(name, h.LeaseTTL, c.d.Policy().Recovery.LeaseMargin))
		}
		if a, ok := agents[name]; ok {
			sig.Agent, sig.HypervisorDown = a.State, a.Meta.Hypervisor == "down"
		} else if h.LeaseTTL > 0 {
			// Its agent holds a lease (one that stops cleanly releases
			// it) but gossip declared it dead, or has not heard it since
			// this server started.
			sig.Agent = "dead"
		}
		known, fresh := c.d.Leases.Heard(name, time.Now())
		sig.Agent = AgentSignal(sig.Agent, known, fresh)
		tr, ok := tracks[name]
		if !ok || tr.Health != h.Health {
			// First look, or someone else (an operator) changed it.
			tr = policy.HealthTrack{Health: h.Health}
		}
		next := policy.FuseHealth(tr, sig, now, p)
		tracks[name] = next
		if next.Returned {
			msg := fmt.Sprintf("host %s answers again after being fenced (%s): it is NOT_ACCEPTING; its stale VM copies are destroyed before it can be made AVAILABLE", name, describeSignals(h, conn, sig))
			if _, err := c.d.Raft.Apply(ctx, &cluster.HostReturned{Host: name, Event: cluster.NewEvent("host.returned", "health", name, "", msg)}); err != nil {
				c.d.Log.Warn("record host return", "host", name, "err", err)
			}
			delete(tracks, name)
			continue
		}
		if next.Health == h.Health {
			continue
		}
		msg := fmt.Sprintf("host %s is %s (was %s): %s", name, next.Health, h.Health, describeSignals(h, conn, sig))
		_, err := c.d.Raft.Apply(ctx, &cluster.SetHostHealth{Host: name, Health: next.Health,
			Event: cluster.NewEvent("host.health", "health", name, "", msg)})
		if err != nil {
			c.d.Log.Warn("record host health", "host", name, "err", err)
			delete(tracks, name)
		}
	}
	for name := range tracks {
		if !present[name] {
			delete(tracks, name)
		}
	}
}

func describeSignals(h *cluster.Host, conn cluster.Connection, sig policy.HealthSignals) string {
	msg := fmt.Sprintf("hypervisor manager reports %s", conn)
	if sig.MetricsDown {
		msg += ", Prometheus down_query lists it"
	}
	if sig.LeaseExpired {
		msg += ", its agent's lease expired"
	}
	switch {
	case sig.Agent != "" && sig.HypervisorDown:
		msg += fmt.Sprintf(", agent %s reports its hypervisor down", sig.Agent)
	case sig.Agent == "silent":
		msg += ", agent's heartbeats stopped (gossip still lists it)"
	case sig.Agent != "":
		msg += ", agent " + sig.Agent
	default:
		msg += ", no agent"
	}
	return msg
}

// AgentSignal is the agent's state for health fusion: its gossip state
// (gossip: "alive" while memberlist lists it, "" when it does not and the
// agent holds no lease, "dead" when it holds one), overridden by the
// heartbeats when the agent sends them: "alive" while they arrive,
// "silent" when they stopped while gossip still lists the agent. An agent
// gossip no longer lists keeps its gossip state: one that left cleanly
// counts as no agent, as before heartbeats.
func AgentSignal(gossip string, known, fresh bool) string {
	switch {
	case known && fresh:
		return "alive"
	case known && gossip == "alive":
		return "silent"
	}
	return gossip
}
