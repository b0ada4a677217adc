package daemon

import (
	"errors"
	"net/http"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/daemon/httpapi"
)

// handleLeave (POST /v1/cluster/leave, on the server that leaves): this
// server asks the leader to remove it from the raft configuration, with
// the caller's own token, then signals that the process should stop.
func (s *Server) handleLeave(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct{}
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	id := s.cfg.NodeName
	var err error
	if s.node.IsLeader() {
		err = s.members.Remove(r.Context(), id, httpapi.Actor(r))
	} else {
		c := s.leaderClient()
		if c == nil {
			return nil, httpapi.Errorf(http.StatusServiceUnavailable, "", "no raft leader (or its API address is not known yet): cannot leave now; try again")
		}
		c.Token, _ = httpapi.BearerToken(r)
		err = c.RemoveServer(r.Context(), id)
	}
	var se *api.StatusError
	switch {
	case errors.As(err, &se):
		return nil, httpapi.FromAPI(se.Code, se.Body)
	case err != nil:
		return nil, httpapi.ApplyFailed(err)
	}
	s.log.Info("left the cluster: stopping", "id", id)
	// The answer goes out before the process is told to stop.
	httpapi.WriteJSON(w, http.StatusOK, api.LeaveResult{Left: id})
	s.leftOnce.Do(func() { close(s.left) })
	return nil, nil
}

// handleRemoveServer (POST /v1/cluster/remove, on the leader) takes a
// server out of the raft configuration.
func (s *Server) handleRemoveServer(w http.ResponseWriter, r *http.Request) (any, error) {
	var req api.RemoveServerRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	if !config.ValidNodeName(req.ID) {
		return nil, httpapi.Errorf(http.StatusBadRequest, "id", "%q is not a valid node name", req.ID)
	}
	if err := s.members.Remove(r.Context(), req.ID, httpapi.Actor(r)); err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	return api.LeaveResult{Left: req.ID}, nil
}

// handleServerStats (GET /v1/cluster/self) is this server's raft position.
func (s *Server) handleServerStats(w http.ResponseWriter, r *http.Request) (any, error) {
	return api.ServerStats{ID: s.cfg.NodeName, Raft: s.node.Stats()}, nil
}
