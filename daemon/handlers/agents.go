package handlers

import (
	"fmt"
	"net/http"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/httpapi"
)

// LeaseRenew renews a host's lease for its agent (leader only: the
// route forwards). Leadership is verified with a quorum before the answer,
// so a deposed leader never extends a lease.
func (a *API) LeaseRenew(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("host")
	var req api.LeaseRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	h, err := a.agentsHost(name, req.Agent)
	if err != nil {
		a.Metrics.LeaseRenewals.WithLabelValues("refused").Inc()
		return nil, err
	}
	if err := a.VerifyLeader(); err != nil {
		a.Metrics.LeaseRenewals.WithLabelValues("refused").Inc()
		return nil, httpapi.Errorf(http.StatusServiceUnavailable, "", "cannot confirm leadership with a quorum: %v", err)
	}
	ttl := a.Policy().Recovery.LeaseTTL
	if req.TTL == 0 {
		// Asking only: the agent learns the TTL before it arms.
		return api.Lease{Host: name, TTL: ttl, Armed: h.LeaseTTL > 0, Leader: a.NodeName}, nil
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
		if _, err := a.Raft.Apply(r.Context(), &cluster.HostLease{Host: name, TTL: armed, Event: ev}); err != nil {
			a.Metrics.LeaseRenewals.WithLabelValues("refused").Inc()
			return nil, httpapi.ApplyFailed(err)
		}
	}
	a.Leases.Renew(name, time.Now())
	a.Metrics.LeaseRenewals.WithLabelValues("ok").Inc()
	return api.Lease{Host: name, TTL: ttl, Armed: true, Leader: a.NodeName}, nil
}

// LeaseRelease disarms lease fencing for a host whose agent stops
// cleanly: without an agent, lease expiry proves nothing.
func (a *API) LeaseRelease(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("host")
	var h *cluster.Host
	a.State.Read(func(st *cluster.State) { h = st.Hosts[name] })
	if h == nil {
		return nil, httpapi.Errorf(http.StatusNotFound, "host", "host %q not found", name)
	}
	if h.LeaseTTL > 0 {
		ev := cluster.NewEvent("host.lease", httpapi.Actor(r), name, "",
			fmt.Sprintf("the agent on host %s released its lease: lease fencing disarmed", name))
		if _, err := a.Raft.Apply(r.Context(), &cluster.HostLease{Host: name, TTL: 0, Event: ev}); err != nil {
			return nil, httpapi.ApplyFailed(err)
		}
	}
	a.Leases.Forget(name)
	return httpapi.NoContent, nil
}

// agentsHost checks the agent's name an agent's request carries and
// returns the host it speaks for.
func (a *API) agentsHost(name, agent string) (*cluster.Host, error) {
	if agent == "" || len(agent) > 256 {
		return nil, httpapi.Errorf(http.StatusBadRequest, "agent", "agent: the agent's name (1 to 256 bytes) is required")
	}
	var h *cluster.Host
	a.State.Read(func(st *cluster.State) { h = st.Hosts[name] })
	if h == nil {
		return nil, httpapi.Errorf(http.StatusNotFound, "host", "host %q not found", name)
	}
	return h, nil
}

// Heartbeat records a heartbeat from a host's agent (leader only:
// the route forwards). Nothing is written to raft: a new leader hears the
// next heartbeat within heartbeatEvery.
func (a *API) Heartbeat(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("host")
	var req api.Heartbeat
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	if _, err := a.agentsHost(name, req.Agent); err != nil {
		return nil, err
	}
	a.Leases.Beat(name, time.Now())
	a.Leases.AgentStart(name, req.Started)
	return api.HeartbeatAnswer{Leader: a.NodeName}, nil
}
