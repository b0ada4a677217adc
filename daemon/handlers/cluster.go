package handlers

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/gossip"
	"github.com/herd-project/herd/cluster/raftnode"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/daemon/httpapi"
	"github.com/herd-project/herd/daemon/membership"
	"github.com/herd-project/herd/daemon/wire"
)

// RaftNode is this server's raft node (raftnode.Node).
type RaftNode interface {
	IsLeader() bool
	Leader() (id, addr string)
	Members() ([]raftnode.Member, error)
	Stats() raftnode.Stats
}

// Membership changes the raft configuration safely
// (membership.Controller).
type Membership interface {
	PlanJoin(req api.JoinRequest) (membership.JoinPlan, error)
	ApplyJoin(req api.JoinRequest, plan membership.JoinPlan) (voter bool, _ error)
	Remove(ctx context.Context, id, who string) error
	Health() map[string]*api.ServerHealth
}

// Servers are what the cluster's handlers (the cluster's view, join,
// leave, remove) work with.
type Servers struct {
	Raft    RaftNode
	Members Membership
	// Gossip lists the gossip pool's members.
	Gossip func() []gossip.Member
	// Self is this server's name and addresses.
	Self func() api.Self
	// LeaderAPI is the leader's API base URL, "" when unknown.
	LeaderAPI func() string
	// Discovered are the servers found so far while forming a cluster.
	Discovered func() []api.Self
	// PolicyStatus is the policy in force and this server's policy file.
	PolicyStatus func() api.PolicyStatus
	// LeaderClient is an API client for the leader, nil when there is none.
	LeaderClient func() *api.Client
	// Leave signals that this server has left and its process should stop.
	Leave func()
	// Stabilization is how long a joined server must be healthy before it
	// is promoted to voter.
	Stabilization time.Duration
}

// Cluster is this server's view of the cluster (GET /v1/cluster).
func (a *API) Cluster(w http.ResponseWriter, r *http.Request) (any, error) {
	st := a.State.State()
	leader, _ := a.Servers.Raft.Leader()
	out := api.Cluster{Self: a.Servers.Self(), Leader: leader, LeaderAPI: a.Servers.LeaderAPI(), Index: st.Index,
		Hosts: len(st.Hosts), VMs: len(st.VMs), Discovered: a.Servers.Discovered(), Servers: []api.Server{}, Policy: a.Servers.PolicyStatus(), Gossip: wire.Gossip(a.Servers.Gossip())}
	members, _ := a.Servers.Raft.Members()
	health := a.Servers.Members.Health()
	for _, m := range members {
		sv := api.Server{ID: m.ID, RaftAddr: m.Address, Voter: m.Voter, Leader: m.ID == leader, Health: health[m.ID]}
		if reg := st.Servers[m.ID]; reg != nil {
			sv.APIAddr = reg.APIAddr
		}
		out.Servers = append(out.Servers, sv)
	}
	return out, nil
}

// Join admits a server to the cluster as a non-voter (POST
// /v1/cluster/join, on the leader).
func (a *API) Join(w http.ResponseWriter, r *http.Request) (any, error) {
	var req api.JoinRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	if !config.ValidNodeName(req.ID) {
		return nil, httpapi.Errorf(http.StatusBadRequest, "id", "%q is not a valid node name", req.ID)
	}
	if _, _, err := net.SplitHostPort(req.RaftAddr); err != nil {
		return nil, httpapi.Errorf(http.StatusBadRequest, "raft_addr", "%q is not host:port", req.RaftAddr)
	}
	if _, err := config.NormalizeAPIAddr(req.APIAddr); err != nil {
		return nil, httpapi.Errorf(http.StatusBadRequest, "api_addr", "%v", err)
	}
	plan, err := a.Servers.Members.PlanJoin(req)
	if err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	// The registration first: a configuration change that then fails
	// leaves only a registration no member uses, never a member the
	// answer did not admit to.
	if _, err := a.Raft.Apply(r.Context(), &cluster.RegisterServer{Server: cluster.Server{ID: req.ID, RaftAddr: req.RaftAddr, APIAddr: req.APIAddr}}); err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	voter, err := a.Servers.Members.ApplyJoin(req, plan)
	if err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	msg := "joined as a non-voter: promoted to voter once caught up and healthy for " + a.Servers.Stabilization.String()
	if voter {
		msg = "a voter already"
	}
	a.Log.Info("server joined", "id", req.ID, "raft", req.RaftAddr, "api", req.APIAddr, "voter", voter)
	return api.JoinResult{ID: req.ID, Voter: voter, Message: msg}, nil
}

// Leave (POST /v1/cluster/leave, on the server that leaves): this
// server asks the leader to remove it from the raft configuration, with
// the caller's own token, then signals that the process should stop.
func (a *API) Leave(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct{}
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	id := a.NodeName
	var err error
	if a.Servers.Raft.IsLeader() {
		err = a.Servers.Members.Remove(r.Context(), id, httpapi.Actor(r))
	} else {
		c := a.Servers.LeaderClient()
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
	a.Log.Info("left the cluster: stopping", "id", id)
	// The answer goes out before the process is told to stop.
	httpapi.WriteJSON(w, http.StatusOK, api.LeaveResult{Left: id})
	a.Servers.Leave()
	return nil, nil
}

// RemoveServer (POST /v1/cluster/remove, on the leader) takes a
// server out of the raft configuration.
func (a *API) RemoveServer(w http.ResponseWriter, r *http.Request) (any, error) {
	var req api.RemoveServerRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	if !config.ValidNodeName(req.ID) {
		return nil, httpapi.Errorf(http.StatusBadRequest, "id", "%q is not a valid node name", req.ID)
	}
	if err := a.Servers.Members.Remove(r.Context(), req.ID, httpapi.Actor(r)); err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	return api.LeaveResult{Left: req.ID}, nil
}

// ServerStats (GET /v1/cluster/self) is this server's raft position.
func (a *API) ServerStats(w http.ResponseWriter, r *http.Request) (any, error) {
	return api.ServerStats{ID: a.NodeName, Raft: wire.RaftStats(a.Servers.Raft.Stats())}, nil
}
