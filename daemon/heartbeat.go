package daemon

import (
	"net/http"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/httpapi"
)

// handleHeartbeat records a heartbeat from a host's agent (leader only:
// the route forwards). Nothing is written to raft: a new leader hears the
// next heartbeat within api.HeartbeatEvery.
func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("host")
	var req api.Heartbeat
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	if _, err := s.agentsHost(name, req.Agent); err != nil {
		return nil, err
	}
	s.leases.Beat(name, time.Now())
	s.leases.AgentStart(name, req.Started)
	return api.HeartbeatAnswer{Leader: s.cfg.NodeName}, nil
}
