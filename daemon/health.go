package daemon

import (
	"context"
	"fmt"
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
}

func (c *healthController) Name() string { return "health" }

func (c *healthController) Run(ctx context.Context) {
	tracks := map[string]policy.HealthTrack{}
	for ctx.Err() == nil {
		c.round(ctx, tracks, time.Now().UTC())
		sleepCtx(ctx, 500*time.Millisecond)
	}
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
	for _, h := range hosts {
		name := h.Name
		present[name] = true
		sig := policy.HealthSignals{Connected: h.Connection == cluster.Connected}
		if a, ok := agents[name]; ok {
			sig.Agent, sig.HypervisorDown = a.State, a.Meta.Hypervisor == "down"
		}
		tr, ok := tracks[name]
		if !ok || tr.Health != h.Health {
			// First look, or someone else (an operator) changed it.
			tr = policy.HealthTrack{Health: h.Health}
		}
		next := policy.FuseHealth(tr, sig, now, p)
		tracks[name] = next
		if next.Health == h.Health {
			continue
		}
		msg := fmt.Sprintf("host %s is %s (was %s): %s", name, next.Health, h.Health, describeSignals(h, sig))
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

func describeSignals(h *cluster.Host, sig policy.HealthSignals) string {
	msg := fmt.Sprintf("hypervisor manager reports %s", h.Connection)
	switch {
	case sig.Agent != "" && sig.HypervisorDown:
		msg += fmt.Sprintf(", agent %s reports its hypervisor down", sig.Agent)
	case sig.Agent != "":
		msg += ", agent " + sig.Agent
	default:
		msg += ", no agent"
	}
	return msg
}
