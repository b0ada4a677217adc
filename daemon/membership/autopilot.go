package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/httpapi"
)

// Membership follows Consul's autopilot (hashicorp/raft-autopilot): a
// joining server enters as a non-voter and is promoted once it has caught
// up and stayed in touch with the leader for raft.server_stabilization; a
// non-voter that does not answer for raft.dead_server_timeout is removed.
// Voters are never removed automatically (that takes an operator's herd
// server remove), so a flapping network cannot shrink the cluster.
const (
	// lastContactThreshold: a server that has not heard from the leader
	// for longer is not healthy (raft heartbeats run every 100 ms).
	lastContactThreshold = 2 * time.Second
	// maxTrailingLogs: a server further behind is not caught up.
	maxTrailingLogs = 250
	// serverProbeEvery is how often the leader asks each server where it stands.
	serverProbeEvery = time.Second
)

// membership is the leader's autopilot: a controller, with a probe loop
// that reads every server's raft position over the API.
type membership struct {
	s *Server

	mu     sync.Mutex
	ap     *autopilot.Autopilot
	probes map[string]*serverProbe
}

// serverProbe is what the leader last learned from one server.
type serverProbe struct {
	firstSeen time.Time
	lastOK    time.Time
	stats     cluster.RaftStats
	// noAddr: the server's API address is not registered (yet).
	noAddr bool
}

func (m *membership) Name() string { return "membership" }

func (m *membership) Run(ctx context.Context) {
	ap := autopilot.New(m.s.node.Raft(), m,
		autopilot.WithLogger(cluster.HCLogger(m.s.log, "autopilot")),
		autopilot.WithPromoter(&keepVoters{}),
		autopilot.WithUpdateInterval(serverProbeEvery),
		autopilot.WithReconcileInterval(2*time.Second))
	m.mu.Lock()
	m.ap, m.probes = ap, map[string]*serverProbe{}
	m.mu.Unlock()
	m.probeAll(ctx)
	ap.Start(ctx)
	t := time.NewTicker(serverProbeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			<-ap.Stop()
			m.mu.Lock()
			m.ap = nil
			m.mu.Unlock()
			return
		case <-t.C:
			m.probeAll(ctx)
		}
	}
}

// probeAll asks every other server in the raft configuration for its raft
// position, all at once, each within a second.
func (m *membership) probeAll(ctx context.Context) {
	members, err := m.s.node.Members()
	if err != nil {
		return
	}
	apis := map[string]string{}
	m.s.node.FSM().Read(func(st *cluster.State) {
		for _, mb := range members {
			if sv := st.Servers[mb.ID]; sv != nil {
				apis[mb.ID] = sv.APIAddr
			}
		}
	})
	now := time.Now()
	var wg sync.WaitGroup
	for _, mb := range members {
		if mb.ID == m.s.cfg.NodeName {
			continue
		}
		addr := apis[mb.ID]
		m.mu.Lock()
		if m.probes[mb.ID] == nil {
			m.probes[mb.ID] = &serverProbe{firstSeen: now}
		}
		m.probes[mb.ID].noAddr = addr == ""
		m.mu.Unlock()
		if addr == "" {
			continue
		}
		wg.Add(1)
		go func(id, addr string) {
			defer wg.Done()
			c, err := m.s.apiClient(addr, serverProbeEvery)
			if err != nil {
				return
			}
			var out api.ServerStats
			if err := c.Get(ctx, "/v1/cluster/self", nil, &out); err != nil || out.ID != id {
				return
			}
			m.mu.Lock()
			if p := m.probes[id]; p != nil {
				p.lastOK, p.stats = time.Now(), out.Raft
			}
			m.mu.Unlock()
		}(mb.ID, addr)
	}
	wg.Wait()
	// Forget servers no longer in the configuration.
	m.mu.Lock()
	for id := range m.probes {
		found := false
		for _, mb := range members {
			found = found || mb.ID == id
		}
		if !found {
			delete(m.probes, id)
		}
	}
	m.mu.Unlock()
}

// up reports whether a server answered the leader's last probes.
func (p *serverProbe) up(now time.Time) bool {
	return !p.lastOK.IsZero() && now.Sub(p.lastOK) < 3*serverProbeEvery
}

func (m *membership) AutopilotConfig() *autopilot.Config {
	return &autopilot.Config{
		CleanupDeadServers:      true,
		LastContactThreshold:    lastContactThreshold,
		MaxTrailingLogs:         maxTrailingLogs,
		ServerStabilizationTime: m.s.cfg.Raft.ServerStabilization,
	}
}

func (m *membership) NotifyState(*autopilot.State) {}

// FetchServerStats answers from the probe loop's last readings: a server
// that has not answered recently has no stats, so it is not healthy.
func (m *membership) FetchServerStats(_ context.Context, servers map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	out := map[raft.ServerID]*autopilot.ServerStats{}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for id := range servers {
		if string(id) == m.s.cfg.NodeName {
			st := m.s.node.Stats()
			out[id] = &autopilot.ServerStats{LastTerm: st.LastLogTerm, LastIndex: st.LastLogIndex}
			continue
		}
		p := m.probes[string(id)]
		if p == nil || !p.up(now) {
			continue
		}
		out[id] = &autopilot.ServerStats{LastContact: time.Duration(p.stats.LastContactMillis) * time.Millisecond,
			LastTerm: p.stats.LastLogTerm, LastIndex: p.stats.LastLogIndex}
	}
	return out
}

// KnownServers is every server in the raft configuration: alive while it
// answers, or while a newcomer is still within dead_server_timeout of
// being first seen; failed otherwise.
func (m *membership) KnownServers() map[raft.ServerID]*autopilot.Server {
	members, err := m.s.node.Members()
	if err != nil {
		return nil
	}
	now := time.Now()
	dead := m.s.cfg.Raft.DeadServerTimeout
	out := map[raft.ServerID]*autopilot.Server{}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mb := range members {
		status := autopilot.NodeAlive
		if mb.ID != m.s.cfg.NodeName {
			p := m.probes[mb.ID]
			switch {
			case p == nil:
			case !p.lastOK.IsZero() && now.Sub(p.lastOK) > dead,
				p.lastOK.IsZero() && now.Sub(p.firstSeen) > dead:
				status = autopilot.NodeFailed
			}
		}
		out[raft.ServerID(mb.ID)] = &autopilot.Server{ID: raft.ServerID(mb.ID), Name: mb.ID, Address: raft.ServerAddress(mb.Address),
			NodeStatus: status, NodeType: autopilot.NodeVoter, IsLeader: mb.ID == m.s.cfg.NodeName}
	}
	return out
}

// RemoveFailedServer takes a non-voter that stopped answering (or never
// did) out of the configuration, and says so in the action log.
func (m *membership) RemoveFailedServer(srv *autopilot.Server) {
	ctx, cancel := context.WithTimeout(m.s.ctx, 10*time.Second)
	defer cancel()
	id := string(srv.ID)
	ev := cluster.NewEvent("cluster.server_removed", "autopilot", "", "",
		fmt.Sprintf("non-voter %s (raft %s) removed: it did not answer for %s", id, srv.Address, m.s.cfg.Raft.DeadServerTimeout))
	if _, err := m.s.node.Apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{ev}}); err != nil {
		m.s.log.Warn("autopilot: record removal", "id", id, "err", err)
		return
	}
	if err := m.s.node.RemoveServer(id); err != nil {
		m.s.log.Warn("autopilot: remove failed non-voter", "id", id, "err", err)
		return
	}
	m.s.log.Info("autopilot removed a non-voter that did not answer", "id", id, "raft", srv.Address)
}

// health is the leader's view of each server, nil when this server does
// not lead (or autopilot has not run yet).
func (m *membership) health() map[string]*api.ServerHealth {
	m.mu.Lock()
	ap := m.ap
	m.mu.Unlock()
	if ap == nil {
		return nil
	}
	st := ap.GetState()
	if st == nil || len(st.Servers) == 0 {
		return nil
	}
	self := m.s.node.Stats()
	now := time.Now()
	out := map[string]*api.ServerHealth{}
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, ss := range st.Servers {
		h := &api.ServerHealth{Suffrage: string(ss.State), Healthy: ss.Health.Healthy, StableSince: ss.Health.StableSince,
			LastContactMillis: ss.Stats.LastContact.Milliseconds(), LastIndex: ss.Stats.LastIndex}
		if string(id) == m.s.cfg.NodeName {
			h.Up, h.LastAnswer, h.LastIndex = true, now, self.LastLogIndex
		} else if p := m.probes[string(id)]; p == nil {
			h.Healthy, h.Unknown, h.Reason = false, true, "not probed yet"
		} else {
			h.Up, h.LastAnswer = p.up(now), p.lastOK
			switch {
			case h.Up:
			case p.lastOK.IsZero() && now.Sub(p.firstSeen) < 3*serverProbeEvery:
				h.Unknown, h.Reason = true, "not probed yet"
			case p.noAddr:
				h.Unknown, h.Reason = true, "its API address is not registered yet"
			case p.lastOK.IsZero():
				h.Reason = fmt.Sprintf("no answer since this leader took over %s ago", now.Sub(p.firstSeen).Round(time.Second))
			default:
				h.Reason = fmt.Sprintf("no answer for %s", now.Sub(p.lastOK).Round(time.Second))
			}
			if !h.Up {
				h.Healthy = false
			}
		}
		if self.LastLogIndex > h.LastIndex {
			h.LogLag = self.LastLogIndex - h.LastIndex
		}
		out[string(id)] = h
	}
	return out
}

// keepVoters is autopilot's stable promoter that never removes a voter on
// its own: only failed non-voters are cleaned up.
type keepVoters struct{ autopilot.StablePromoter }

func (*keepVoters) FilterFailedServerRemovals(_ *autopilot.Config, _ *autopilot.State, f *autopilot.FailedServers) *autopilot.FailedServers {
	return &autopilot.FailedServers{StaleNonVoters: f.StaleNonVoters, FailedNonVoters: f.FailedNonVoters}
}

// handleServerStats (GET /v1/cluster/self) is this server's raft position.
func (s *Server) handleServerStats(w http.ResponseWriter, r *http.Request) (any, error) {
	return api.ServerStats{ID: s.cfg.NodeName, Raft: s.node.Stats()}, nil
}

// joinPlan is what a join changes: nothing when the server is a member
// at that address already; otherwise it is added (a voter that moved keeps
// its vote, anyone else enters as a non-voter that autopilot promotes).
type joinPlan struct {
	member, voter bool
}

// planJoin checks a join before anything changes: the raft address is no
// other member's, and a server not yet at that address answers on it.
func (s *Server) planJoin(req api.JoinRequest) (joinPlan, *httpapi.Error) {
	members, err := s.node.Members()
	if err != nil {
		return joinPlan{}, &httpapi.Error{Code: http.StatusServiceUnavailable, Msg: err.Error()}
	}
	var plan joinPlan
	for _, m := range members {
		switch {
		case m.ID == req.ID:
			plan.voter = m.Voter
			plan.member = m.Address == req.RaftAddr
		case m.Address == req.RaftAddr:
			return joinPlan{}, &httpapi.Error{Code: http.StatusConflict, Field: "raft_addr", Msg: fmt.Sprintf("raft address %s is server %s's", req.RaftAddr, m.ID)}
		}
	}
	if plan.member {
		return plan, nil
	}
	conn, err := net.DialTimeout("tcp", req.RaftAddr, 2*time.Second)
	if err != nil {
		return joinPlan{}, httpapi.BadField("raft_addr", "raft address %s cannot be reached (%v): a server that cannot be reached is not added", req.RaftAddr, err)
	}
	conn.Close()
	return plan, nil
}

// applyJoin makes the configuration change planJoin decided.
func (s *Server) applyJoin(req api.JoinRequest, plan joinPlan) (voter bool, _ *httpapi.Error) {
	if plan.member {
		return plan.voter, nil
	}
	var err error
	if plan.voter {
		err = s.node.AddVoter(req.ID, req.RaftAddr)
	} else {
		err = s.node.AddNonvoter(req.ID, req.RaftAddr)
	}
	if err != nil {
		return false, &httpapi.Error{Code: http.StatusServiceUnavailable, Msg: fmt.Sprintf("add server %s: %v", req.ID, err)}
	}
	return plan.voter, nil
}

// removalBlocker says why removing id would leave the voters without a
// majority that answers, or "". A server counts as down once it has
// stopped answering the leader's probes, or never answered them for a few
// seconds; without the leader's probes (autopilot not running) nothing is
// blocked.
func (m *membership) removalBlocker(members []cluster.Member, id string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ap == nil {
		return ""
	}
	now := time.Now()
	voters, up := 0, 0
	var down []string
	for _, mb := range members {
		if !mb.Voter || mb.ID == id {
			continue
		}
		voters++
		p := m.probes[mb.ID]
		answering := mb.ID == m.s.cfg.NodeName || p == nil || p.up(now) || p.lastOK.IsZero() && now.Sub(p.firstSeen) < 3*serverProbeEvery
		if answering {
			up++
		} else {
			down = append(down, mb.ID)
		}
	}
	if voters > 0 && up < voters/2+1 {
		return fmt.Sprintf("removing %s would leave %d voters of which only %d answer (%s down): a majority is needed to keep writing; remove the down servers first", id, voters, up, strings.Join(down, ", "))
	}
	return ""
}

// failureTolerance is autopilot's count of voters that may fail while a
// healthy majority stays; ok only on a leader whose autopilot has run.
func (m *membership) failureTolerance() (int, bool) {
	m.mu.Lock()
	ap := m.ap
	m.mu.Unlock()
	if ap == nil {
		return 0, false
	}
	st := ap.GetState()
	if st == nil || len(st.Servers) == 0 {
		return 0, false
	}
	return st.FailureTolerance, true
}
