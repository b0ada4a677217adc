package daemon

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/internal/ctxsleep"
)

type selfInfo = api.Self

// form brings this server into a cluster: a dev or single server bootstraps
// itself; with bootstrap_expect N the servers find each other through their
// join addresses and all bootstrap with the same N members; otherwise the
// server asks a member to add it. A server with state only keeps its
// registration current.
func (s *Server) form() {
	has, err := s.node.HasState()
	if err != nil {
		s.log.Error("read raft state", "err", err)
		return
	}
	switch {
	case has:
	case s.cfg.Dev || s.cfg.Raft.BootstrapExpect == 1:
		if err := s.node.Bootstrap(map[string]string{s.cfg.NodeName: s.node.Addr()}); err != nil {
			s.log.Error("bootstrap", "err", err)
		}
	case s.cfg.Raft.BootstrapExpect > 1:
		s.discover()
	default:
		s.joinLoop()
	}
	s.keepRegistered()
}

// clustered reports whether this server is in a raft configuration.
func (s *Server) clustered() bool {
	m, err := s.node.Members()
	return err == nil && len(m) > 0
}

func (s *Server) selfInfo() selfInfo {
	return selfInfo{ID: s.cfg.NodeName, RaftAddr: s.node.Addr(), APIAddr: s.apiAddr, Clustered: s.clustered()}
}

// joinClients are clients for the raft.join addresses and for the other
// servers gossip knows of: servers that share only a gossip join list
// find each other's APIs there.
func (s *Server) joinClients() []*api.Client {
	var out []*api.Client
	seen := map[string]bool{}
	add := func(a, scheme string) {
		addr, err := config.NormalizeAPIAddrScheme(a, scheme)
		if err != nil || seen[addr] || addr == s.apiAddr {
			return
		}
		seen[addr] = true
		if c, err := s.apiClient(addr, 3*time.Second); err == nil {
			out = append(out, c)
		}
	}
	for _, j := range s.cfg.Raft.Join {
		add(j, s.apiScheme())
	}
	for _, m := range s.gossip.Members() {
		if m.Meta.Role == cluster.RoleServer && m.State == "alive" && m.Name != s.cfg.NodeName && m.Meta.API != "" {
			add(m.Meta.API, s.apiScheme())
		}
	}
	return out
}

// discover polls the join addresses until bootstrap_expect servers are
// known, then bootstraps; it joins instead when it finds a formed cluster.
func (s *Server) discover() {
	expect := s.cfg.Raft.BootstrapExpect
	for s.ctx.Err() == nil && !s.clustered() {
		for _, c := range s.joinClients() {
			info, err := c.Cluster(s.ctx)
			if err != nil {
				continue
			}
			if info.Leader != "" {
				if s.join(c) {
					return
				}
				continue
			}
			s.discoveredMu.Lock()
			for _, p := range append(info.Discovered, info.Self) {
				if p.ID != "" && p.ID != s.cfg.NodeName {
					s.discovered[p.ID] = p
				}
			}
			n := len(s.discovered) + 1
			s.discoveredMu.Unlock()
			if n >= expect {
				servers := map[string]string{s.cfg.NodeName: s.node.Addr()}
				for _, p := range s.discoveredList() {
					if len(servers) < expect {
						servers[p.ID] = p.RaftAddr
					}
				}
				s.log.Info("bootstrapping cluster", "servers", servers)
				if err := s.node.Bootstrap(servers); err != nil {
					s.log.Error("bootstrap", "err", err)
				}
				return
			}
		}
		sleepCtx(s.ctx, time.Second)
	}
}

// discoveredList is the servers found so far, by id, so every server of a
// new cluster picks the same ones.
func (s *Server) discoveredList() []selfInfo {
	s.discoveredMu.Lock()
	defer s.discoveredMu.Unlock()
	out := make([]selfInfo, 0, len(s.discovered))
	for _, p := range s.discovered {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (s *Server) joinLoop() {
	for s.ctx.Err() == nil && !s.clustered() {
		for _, c := range s.joinClients() {
			if s.join(c) {
				return
			}
		}
		sleepCtx(s.ctx, 2*time.Second)
	}
}

func (s *Server) join(c *api.Client) bool {
	me := s.selfInfo()
	err := c.Do(s.ctx, http.MethodPost, "/v1/cluster/join", nil, api.JoinRequest{ID: me.ID, RaftAddr: me.RaftAddr, APIAddr: me.APIAddr}, nil)
	if err != nil {
		s.log.Warn("join cluster", "via", c.Base, "err", err)
		return false
	}
	s.log.Info("joined cluster", "via", c.Base)
	return true
}

// keepRegistered makes sure the state holds this server's current
// addresses, so followers can forward writes to whichever server leads.
func (s *Server) keepRegistered() {
	for s.ctx.Err() == nil {
		self := s.self()
		var cur *cluster.Server
		s.node.FSM().Read(func(st *cluster.State) { cur = st.Servers[self.ID] })
		if cur == nil || *cur != self {
			if s.node.IsLeader() {
				_ = s.registerSelf(s.ctx)
			} else if addr := s.leaderAPI(); addr != "" {
				if c, err := s.apiClient(addr, 3*time.Second); err == nil {
					s.join(c)
				}
			} else {
				// No leader heard of (our raft address may have changed):
				// any member forwards the join to the leader.
				for _, c := range s.joinClients() {
					if s.join(c) {
						break
					}
				}
			}
		}
		sleepCtx(s.ctx, 2*time.Second)
	}
}

// sleepCtx returns after d, or as soon as ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) { ctxsleep.Sleep(ctx, d) }
