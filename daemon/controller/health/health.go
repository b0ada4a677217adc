package daemon

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
)

// healthController fuses, on the leader, each host's signals — its
// hypervisor manager's connection state (from inventory sync) and its
// agent's gossip state when it runs one — into the host's health, with the
// policy's thresholds. Timers live in memory: a new leader starts them
// afresh, which only ever delays a verdict.
type healthController struct {
	s *Server

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

func (c *healthController) Name() string { return "health" }

// probeEvery is how often the drivers are asked about every host: a
// quarter of suspect_after (so detection does not wait for inventory
// sync), between 200 ms and 2 s.
func probeEvery(p policy.HealthPolicy) time.Duration {
	return min(max(p.SuspectAfter/4, 200*time.Millisecond), 2*time.Second)
}

func (c *healthController) Run(ctx context.Context) {
	c.mu.Lock()
	c.probes, c.down, c.degraded, c.evacuated = map[string]probeResult{}, nil, nil, map[string]bool{}
	c.mu.Unlock()
	go c.probeLoop(ctx)
	go c.promLoop(ctx)
	tracks := map[string]policy.HealthTrack{}
	for ctx.Err() == nil {
		c.round(ctx, tracks, time.Now().UTC())
		sleepCtx(ctx, min(probeEvery(c.s.Policy().Health), 500*time.Millisecond))
	}
}

// probeLoop asks each host's driver how the host is, on its own clock.
func (c *healthController) probeLoop(ctx context.Context) {
	for ctx.Err() == nil {
		every := probeEvery(c.s.Policy().Health)
		var hosts []*cluster.Host
		c.s.node.FSM().Read(func(st *cluster.State) {
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
		sleepCtx(ctx, every)
	}
}

// probe asks h's driver; a call that fails or times out means the host
// does not respond. "" when nothing can be said (no driver, shutting down).
func (c *healthController) probe(ctx context.Context, h *cluster.Host, every time.Duration) cluster.Connection {
	d, err := c.s.drivers.Get(ctx, h.Driver)
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
func (c *healthController) promLoop(ctx context.Context) {
	for ctx.Err() == nil {
		doc := c.s.Policy()
		src, hp := doc.MetricSources.Prometheus, doc.Health
		if src != nil && (hp.DownQuery != "" || hp.DegradedQuery != "") {
			st := c.s.node.FSM().State()
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
				if err := c.s.evacuateDegraded(ctx, h, "degraded_query "+hp.DegradedQuery); err != nil {
					c.s.log.Warn("evacuate degraded host", "host", h, "err", err)
				}
			}
		}
		sleepCtx(ctx, promEvery)
	}
}

// hostSet runs one query: the hosts it returns a sample for (an empty
// query returns none). Errors are counted and logged.
func (c *healthController) hostSet(ctx context.Context, src *policy.PrometheusSource, name, query string, st *cluster.State) (map[string]bool, error) {
	out := map[string]bool{}
	if query == "" {
		return out, nil
	}
	vals, err := c.s.hostQuery(ctx, src, name, query, st)
	if err != nil {
		c.s.metrics.MetricSourceErrors.WithLabelValues("prometheus").Inc()
		c.s.log.Warn("health query failed", "query", name, "err", err)
		return nil, err
	}
	for h := range vals {
		out[h] = true
	}
	return out, nil
}

// metricsDown reports whether the down query (fresh) lists h.
func (c *healthController) metricsDown(h string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down[h] && time.Since(c.promAt) < 3*promEvery
}

// connection is the freshest word on h's management connection: a recent
// probe, else what inventory sync last saw.
func (c *healthController) connection(h *cluster.Host, now time.Time, every time.Duration) cluster.Connection {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.probes[h.Name]; ok && now.Sub(p.at) < 3*every+time.Second {
		return p.conn
	}
	return h.Connection
}

func (c *healthController) round(ctx context.Context, tracks map[string]policy.HealthTrack, now time.Time) {
	// The hosts only (values are immutable): no copy of the VM maps.
	var hosts []*cluster.Host
	c.s.node.FSM().Read(func(st *cluster.State) {
		for _, name := range st.HostNames() {
			hosts = append(hosts, st.Hosts[name])
		}
	})
	p := c.s.Policy().Health
	agents := map[string]cluster.GossipMember{}
	for _, m := range c.s.gossipMembers() {
		if m.Meta.Role == cluster.RoleAgent && m.Meta.Host != "" {
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
			sig.LeaseExpired = !time.Now().Before(c.s.leases.deadline(name, h.LeaseTTL, c.s.Policy().Recovery.LeaseMargin))
		}
		if a, ok := agents[name]; ok {
			sig.Agent, sig.HypervisorDown = a.State, a.Meta.Hypervisor == "down"
		} else if h.LeaseTTL > 0 {
			// Its agent holds a lease (one that stops cleanly releases
			// it) but gossip declared it dead, or has not heard it since
			// this server started.
			sig.Agent = "dead"
		}
		known, fresh := c.s.leases.heard(name, time.Now())
		sig.Agent = agentSignal(sig.Agent, known, fresh)
		tr, ok := tracks[name]
		if !ok || tr.Health != h.Health {
			// First look, or someone else (an operator) changed it.
			tr = policy.HealthTrack{Health: h.Health}
		}
		next := policy.FuseHealth(tr, sig, now, p)
		tracks[name] = next
		if next.Returned {
			msg := fmt.Sprintf("host %s answers again after being fenced (%s): it is NOT_ACCEPTING; its stale VM copies are destroyed before it can be made AVAILABLE", name, describeSignals(h, conn, sig))
			if _, err := c.s.node.Apply(ctx, &cluster.HostReturned{Host: name, Event: cluster.NewEvent("host.returned", "health", name, "", msg)}); err != nil {
				c.s.log.Warn("record host return", "host", name, "err", err)
			}
			delete(tracks, name)
			continue
		}
		if next.Health == h.Health {
			continue
		}
		msg := fmt.Sprintf("host %s is %s (was %s): %s", name, next.Health, h.Health, describeSignals(h, conn, sig))
		_, err := c.s.node.Apply(ctx, &cluster.SetHostHealth{Host: name, Health: next.Health,
			Event: cluster.NewEvent("host.health", "health", name, "", msg)})
		if err != nil {
			c.s.log.Warn("record host health", "host", name, "err", err)
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
