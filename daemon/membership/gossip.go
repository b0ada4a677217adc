package daemon

import (
	"fmt"
	"time"

	"github.com/herd-project/herd/cluster"
)

// startGossip joins the server to the gossip pool when gossip.listen is
// set: it announces its role and API address, and retries the join list
// until a member answers — and again whenever it sees no other server
// alive (cluster.Gossip.KeepJoined).
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
	gs, err := cluster.StartGossip(cluster.GossipConfig{Name: s.cfg.NodeName, Bind: g.Listen, Advertise: g.Advertise, Keys: keys, Profile: g.Profile,
		Meta: cluster.MemberMeta{Role: cluster.RoleServer, API: s.apiAddr}, Logger: s.log,
		OnProbe:   func(rtt time.Duration) { s.metrics.GossipProbeRTT.Observe(rtt.Seconds()) },
		OnSuspect: s.metrics.GossipSuspicions.Inc})
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	s.gossip = gs
	if len(g.Join) == 0 {
		return nil
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		gs.KeepJoined(s.ctx, g.Join, s.log)
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
