package daemon

import (
	"fmt"
	"net/http"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/httpapi"
)

// handleLeaseRenew renews a host's lease for its agent (leader only: the
// route forwards). Leadership is verified with a quorum before the answer,
// so a deposed leader never extends a lease.
func (s *Server) handleLeaseRenew(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("host")
	var req api.LeaseRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	h, err := s.agentsHost(name, req.Agent)
	if err != nil {
		s.metrics.LeaseRenewals.WithLabelValues("refused").Inc()
		return nil, err
	}
	if err := s.node.Raft().VerifyLeader().Error(); err != nil {
		s.metrics.LeaseRenewals.WithLabelValues("refused").Inc()
		return nil, httpapi.Errorf(http.StatusServiceUnavailable, "", "cannot confirm leadership with a quorum: %v", err)
	}
	ttl := s.Policy().Recovery.LeaseTTL
	if req.TTL == 0 {
		// Asking only: the agent learns the TTL before it arms.
		return api.Lease{Host: name, TTL: ttl, Armed: h.LeaseTTL > 0, Leader: s.cfg.NodeName}, nil
	}
	if req.TTL < 0 || req.TTL > 10*time.Minute {
		return nil, httpapi.Errorf(http.StatusBadRequest, "ttl", "ttl: %s is out of range (up to 10m)", req.TTL)
	}
	// The state keeps the longest lease an agent may hold itself to while
	// armed: a new leader waits that out. It never shrinks while armed.
	armed := max(h.LeaseTTL, req.TTL, ttl)
	if armed != h.LeaseTTL {
		ev := cluster.NewEvent("host.lease", "agent:"+req.Agent, name, "",
			fmt.Sprintf("agent %s holds a lease on host %s (TTL %s): lease fencing armed", req.Agent, name, armed))
		if _, err := s.node.Apply(r.Context(), &cluster.HostLease{Host: name, TTL: armed, Event: ev}); err != nil {
			s.metrics.LeaseRenewals.WithLabelValues("refused").Inc()
			return nil, httpapi.ApplyFailed(err)
		}
	}
	s.leases.Renew(name, time.Now())
	s.metrics.LeaseRenewals.WithLabelValues("ok").Inc()
	return api.Lease{Host: name, TTL: ttl, Armed: true, Leader: s.cfg.NodeName}, nil
}

// agentsHost checks the agent's name an agent's request carries and
// returns the host it speaks for.
func (s *Server) agentsHost(name, agent string) (*cluster.Host, error) {
	if agent == "" || len(agent) > 256 {
		return nil, httpapi.Errorf(http.StatusBadRequest, "agent", "agent: the agent's name (1 to 256 bytes) is required")
	}
	var h *cluster.Host
	s.node.FSM().Read(func(st *cluster.State) { h = st.Hosts[name] })
	if h == nil {
		return nil, httpapi.Errorf(http.StatusNotFound, "host", "host %q not found", name)
	}
	return h, nil
}

// handleLeaseRelease disarms lease fencing for a host whose agent stops
// cleanly: without an agent, lease expiry proves nothing.
func (s *Server) handleLeaseRelease(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("host")
	var h *cluster.Host
	s.node.FSM().Read(func(st *cluster.State) { h = st.Hosts[name] })
	if h == nil {
		return nil, httpapi.Errorf(http.StatusNotFound, "host", "host %q not found", name)
	}
	if h.LeaseTTL > 0 {
		ev := cluster.NewEvent("host.lease", httpapi.Actor(r), name, "",
			fmt.Sprintf("the agent on host %s released its lease: lease fencing disarmed", name))
		if _, err := s.node.Apply(r.Context(), &cluster.HostLease{Host: name, TTL: 0, Event: ev}); err != nil {
			return nil, httpapi.ApplyFailed(err)
		}
	}
	s.leases.Forget(name)
	return httpapi.NoContent, nil
}
