package daemon

import (
	"net/http"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/httpapi"
)

// Heartbeats (api.HeartbeatEvery, sent by the agent) are the direct
// liveness path of a host's agent; gossip stays for membership, discovery
// and the partition view, and speaks for agents the leader has not heard a
// heartbeat from in its term.

// beat records a heartbeat from host's agent at now.
func (l *leaseTable) beat(host string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.beats == nil {
		l.beats = map[string]time.Time{}
	}
	l.beats[host] = now
}

// agentStart records when host's agent says it started (zero: an agent
// that does not say).
func (l *leaseTable) agentStart(host string, started time.Time) {
	if started.IsZero() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.starts == nil {
		l.starts = map[string]time.Time{}
	}
	l.starts[host] = started
}

// agentStarted is when host's agent last said it started, zero when this
// leader has not heard it say: a change means the agent restarted.
func (l *leaseTable) agentStarted(host string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.starts[host]
}

// heard says whether host's agent has sent this leader a heartbeat in its
// term (known) and whether the last one is under heartbeatLost old.
func (l *leaseTable) heard(host string, now time.Time) (known, fresh bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.beats[host]
	return ok, ok && now.Sub(t) < api.HeartbeatLost
}

// handleHeartbeat records a heartbeat from a host's agent (leader only:
// the route forwards). Nothing is written to raft: a new leader hears the
// next heartbeat within heartbeatEvery.
func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("host")
	var req api.Heartbeat
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	if _, err := s.agentsHost(name, req.Agent); err != nil {
		return nil, err
	}
	s.leases.beat(name, time.Now())
	s.leases.agentStart(name, req.Started)
	return api.HeartbeatAnswer{Leader: s.cfg.NodeName}, nil
}
