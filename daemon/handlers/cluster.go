package daemon

import (
	"net"
	"net/http"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/daemon/httpapi"
)

func (s *Server) handleCluster(w http.ResponseWriter, r *http.Request) (any, error) {
	st := s.node.FSM().State()
	leader, _ := s.node.Leader()
	out := api.Cluster{Self: s.selfInfo(), Leader: leader, LeaderAPI: s.leaderAPI(), Index: st.Index,
		Hosts: len(st.Hosts), VMs: len(st.VMs), Discovered: s.discoveredList(), Servers: []api.Server{}, Policy: s.policyStatus(), Gossip: s.gossip.Members()}
	members, _ := s.node.Members()
	health := s.members.Health()
	for _, m := range members {
		sv := api.Server{ID: m.ID, RaftAddr: m.Address, Voter: m.Voter, Leader: m.ID == leader, Health: health[m.ID]}
		if reg := st.Servers[m.ID]; reg != nil {
			sv.APIAddr = reg.APIAddr
		}
		out.Servers = append(out.Servers, sv)
	}
	return out, nil
}

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) (any, error) {
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
	plan, err := s.members.PlanJoin(req)
	if err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	// The registration first: a configuration change that then fails
	// leaves only a registration no member uses, never a member the
	// answer did not admit to.
	if _, err := s.node.Apply(r.Context(), &cluster.RegisterServer{Server: cluster.Server{ID: req.ID, RaftAddr: req.RaftAddr, APIAddr: req.APIAddr}}); err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	voter, err := s.members.ApplyJoin(req, plan)
	if err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	msg := "joined as a non-voter: promoted to voter once caught up and healthy for " + s.cfg.Raft.ServerStabilization.String()
	if voter {
		msg = "a voter already"
	}
	s.log.Info("server joined", "id", req.ID, "raft", req.RaftAddr, "api", req.APIAddr, "voter", voter)
	return api.JoinResult{ID: req.ID, Voter: voter, Message: msg}, nil
}
