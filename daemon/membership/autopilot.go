// Package membership is the servers' side of cluster membership: the
// gossip pool a server joins, the leader's autopilot (a joining server
// enters as a non-voter and is promoted once caught up; a non-voter that
// stops answering is removed), joins and safe removals.
package membership

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/raftnode"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/internal/logbridge"
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

// Node is the server's raft node as membership changes it (raftnode.Node).
type Node interface {
	Apply(ctx context.Context, cmd cluster.Command) (uint64, error)
	Members() ([]raftnode.Member, error)
	Stats() raftnode.Stats
	AddVoter(id, addr string) error
	AddNonvoter(id, addr string) error
	RemoveServer(id string) error
}

// State reads the replicated state (cluster.FSM).
type State interface {
	Read(fn func(st *cluster.State))
}

// Deps are what membership works with.
type Deps struct {
	// Self is this server's node name.
	Self string
	Node Node
	// Raft is the raft library's own handle, which autopilot drives.
	Raft  autopilot.Raft
	State State
	// Client is a client for another server's API.
	Client func(addr string, timeout time.Duration) (*api.Client, error)
	// ServerStabilization and DeadServerTimeout are raft.server_stabilization
	// and raft.dead_server_timeout.
	ServerStabilization time.Duration
	DeadServerTimeout   time.Duration
	// Done ends with the server: autopilot's removals run within it.
	Done context.Context
	Log  *slog.Logger
}

// Controller is the leader's autopilot: a controller, with a probe loop
// that reads every server's raft position over the API.
type Controller struct {
	d Deps

	mu     sync.Mutex
	ap     *autopilot.Autopilot
	probes map[string]*serverProbe
}

// serverProbe is what the leader last learned from one server.
type serverProbe struct {
	firstSeen time.Time
	lastOK    time.Time
	stats     api.RaftStats
	// noAddr: the server's API address is not registered (yet).
	noAddr bool
}

// New is the membership controller.
func New(d Deps) *Controller { return &Controller{d: d} }

// Name names the controller in logs.
func (m *Controller) Name() string { return "membership" }

// Run runs autopilot and probes the servers until ctx ends.
func (m *Controller) Run(ctx context.Context) {
	ap := autopilot.New(m.d.Raft, m,
		autopilot.WithLogger(logbridge.HCLogger(m.d.Log, "autopilot")),
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
func (m *Controller) probeAll(ctx context.Context) {
	members, err := m.d.Node.Members()
	if err != nil {
		return
	}
	apis := map[string]string{}
	m.d.State.Read(func(st *cluster.State) {
		for _, mb := range members {
			if sv := st.Servers[mb.ID]; sv != nil {
				apis[mb.ID] = sv.APIAddr
			}
		}
	})
	now := time.Now()
	var wg sync.WaitGroup
	for _, mb := range members {
		if mb.ID == m.d.Self {
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
			c, err := m.d.Client(addr, serverProbeEvery)
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

func (m *Controller) AutopilotConfig() *autopilot.Config {
	return &autopilot.Config{
		CleanupDeadServers:      true,
		LastContactThreshold:    lastContactThreshold,
		MaxTrailingLogs:         maxTrailingLogs,
		ServerStabilizationTime: m.d.ServerStabilization,
	}
}

func (m *Controller) NotifyState(*autopilot.State) {}

// FetchServerStats answers from the probe loop's last readings: a server
// that has not answered recently has no stats, so it is not healthy.
func (m *Controller) FetchServerStats(_ context.Context, servers map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	out := map[raft.ServerID]*autopilot.ServerStats{}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for id := range servers {
		if string(id) == m.d.Self {
			st := m.d.Node.Stats()
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
func (m *Controller) KnownServers() map[raft.ServerID]*autopilot.Server {
	members, err := m.d.Node.Members()
	if err != nil {
		return nil
	}
	now := time.Now()
	dead := m.d.DeadServerTimeout
	out := map[raft.ServerID]*autopilot.Server{}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mb := range members {
		status := autopilot.NodeAlive
		if mb.ID != m.d.Self {
			p := m.probes[mb.ID]
			switch {
			case p == nil:
			case !p.lastOK.IsZero() && now.Sub(p.lastOK) > dead,
				p.lastOK.IsZero() && now.Sub(p.firstSeen) > dead:
				status = autopilot.NodeFailed
			}
		}
		out[raft.ServerID(mb.ID)] = &autopilot.Server{ID: raft.ServerID(mb.ID), Name: mb.ID, Address: raft.ServerAddress(mb.Address),
			NodeStatus: status, NodeType: autopilot.NodeVoter, IsLeader: mb.ID == m.d.Self}
	}
	return out
}

// RemoveFailedServer takes a non-voter that stopped answering (or never
// did) out of the configuration, and says so in the action log.
func (m *Controller) RemoveFailedServer(srv *autopilot.Server) {
	ctx, cancel := context.WithTimeout(m.d.Done, 10*time.Second)
	defer cancel()
	id := string(srv.ID)
	ev := cluster.NewEvent("cluster.server_removed", "autopilot", "", "",
		fmt.Sprintf("non-voter %s (raft %s) removed: it did not answer for %s", id, srv.Address, m.d.DeadServerTimeout))
	if _, err := m.d.Node.Apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{ev}}); err != nil {
		m.d.Log.Warn("autopilot: record removal", "id", id, "err", err)
		return
	}
	if err := m.d.Node.RemoveServer(id); err != nil {
		m.d.Log.Warn("autopilot: remove failed non-voter", "id", id, "err", err)
		return
	}
	m.d.Log.Info("autopilot removed a non-voter that did not answer", "id", id, "raft", srv.Address)
}

// Health is the leader's view of each server, nil when this server does
// not lead (or autopilot has not run yet).
func (m *Controller) Health() map[string]*api.ServerHealth {
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
	self := m.d.Node.Stats()
	now := time.Now()
	out := map[string]*api.ServerHealth{}
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, ss := range st.Servers {
		h := &api.ServerHealth{Suffrage: string(ss.State), Healthy: ss.Health.Healthy, StableSince: ss.Health.StableSince,
			LastContactMillis: ss.Stats.LastContact.Milliseconds(), LastIndex: ss.Stats.LastIndex}
		if string(id) == m.d.Self {
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

// removalBlocker says why removing id would leave the voters without a
// majority that answers, or "". A server counts as down once it has
// stopped answering the leader's probes, or never answered them for a few
// seconds; without the leader's probes (autopilot not running) nothing is
// blocked.
func (m *Controller) removalBlocker(members []raftnode.Member, id string) string {
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
		answering := mb.ID == m.d.Self || p == nil || p.up(now) || p.lastOK.IsZero() && now.Sub(p.firstSeen) < 3*serverProbeEvery
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

// FailureTolerance is autopilot's count of voters that may fail while a
// healthy majority stays; ok only on a leader whose autopilot has run.
func (m *Controller) FailureTolerance() (int, bool) {
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
