package daemon

import (
	"fmt"
	"time"

	"github.com/herd-project/herd/cluster"
)

// startGossip joins the server to the gossip pool when gossip.listen is
// set: it announces its role and API address, and retries the join list
// until a member answers.
func (s *Server) startGossip() error {
	g := s.cfg.Gossip
	if g.Listen == "" {
		return nil
	}
	var keys [][]byte
	if g.KeyringFile != "" {
		k, err := cluster.ReadKeyring(g.KeyringFile)
		if err != nil {
			return err
		}
		keys = k
	}
	gs, err := cluster.StartGossip(cluster.GossipConfig{Name: s.cfg.NodeName, Bind: g.Listen, Advertise: g.Advertise, Keys: keys,
		Meta: cluster.MemberMeta{Role: cluster.RoleServer, API: s.apiAddr}, Logger: s.log,
		OnProbe: func(rtt time.Duration) { s.metrics.GossipProbeRTT.Observe(rtt.Seconds()) }})
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	s.gossip = gs
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.countProbeFailures()
	}()
	if len(g.Join) == 0 {
		return nil
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for s.ctx.Err() == nil {
			err := gs.Join(g.Join)
			if err == nil {
				s.log.Info("joined gossip", "via", g.Join)
				return
			}
			s.log.Warn("gossip join failed; retrying", "err", err)
			sleepCtx(s.ctx, 2*time.Second)
		}
	}()
	return nil
}

// gossipMembers lists the pool as this server sees it (nil without gossip).
func (s *Server) gossipMembers() []cluster.GossipMember {
	if s.gossip == nil {
		return nil
	}
	return s.gossip.Members()
}

// gossipStates counts members by state for the metrics.
func (s *Server) gossipStates() map[string]int {
	out := map[string]int{}
	for _, m := range s.gossipMembers() {
		out[m.State]++
	}
	return out
}

// countProbeFailures watches the pool and counts members that stop
// answering probes: alive ones that turn suspect (a failed probe, direct
// and indirect). A clean leave is not a failure.
func (s *Server) countProbeFailures() {
	prev := map[string]string{}
	for s.ctx.Err() == nil {
		cur := map[string]string{}
		for _, m := range s.gossip.Members() {
			cur[m.Name] = m.State
			if m.State == "suspect" && prev[m.Name] == "alive" {
				s.metrics.GossipSuspicions.Inc()
			}
		}
		prev = cur
		sleepCtx(s.ctx, 250*time.Millisecond)
	}
}
