package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/herd-project/herd/cluster"
)

// startGossip joins the server to the gossip pool when gossip.listen is
// set: it announces its role and API address, and retries the join list
// until a member answers — and again whenever it sees no other server
// alive (keepJoined).
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
		keepJoined(s.ctx, gs, g.Join, s.cfg.NodeName, s.log)
	}()
	return nil
}

// joinEvery is how often keepJoined checks the pool and retries a join.
const joinEvery = 2 * time.Second

// keepJoined joins gossip through join, and joins again whenever this
// member sees no other server alive. After a partition that outlasted
// memberlist's GossipToTheDeadTime, each side has declared the other dead
// and neither contacts the other again: without a new join the pool never
// heals, and a host whose agent was cut off would never come back.
func keepJoined(ctx context.Context, g *cluster.Gossip, join []string, self string, log *slog.Logger) {
	// sawServer: another server was alive since the last join, so a join
	// now is news worth a line (a lone server joining itself is not).
	joined, failing, sawServer := false, false, false
	for ctx.Err() == nil {
		if otherServerAlive(g.Members(), self) {
			sawServer = true
		} else {
			err := g.Join(join)
			switch {
			case err != nil && !failing:
				log.Warn("gossip join failed; retrying", "via", join, "every", joinEvery, "err", err)
			case err == nil && !joined:
				log.Info("joined gossip", "via", join)
			case err == nil && sawServer:
				log.Info("joined gossip again: no other server was alive in it", "via", join)
			}
			failing = err != nil
			joined = joined || err == nil
			sawServer = sawServer && err != nil
		}
		sleepCtx(ctx, joinEvery)
	}
}

// otherServerAlive reports whether members has a server other than self.
func otherServerAlive(members []cluster.GossipMember, self string) bool {
	for _, m := range members {
		if m.Name != self && m.Meta.Role == cluster.RoleServer && m.State == "alive" {
			return true
		}
	}
	return false
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
