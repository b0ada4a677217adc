package membership

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
)

// JoinPlan is what a join changes: nothing when the server is a member
// at that address already; otherwise it is added (a voter that moved keeps
// its vote, anyone else enters as a non-voter that autopilot promotes).
type JoinPlan struct {
	member, voter bool
}

// PlanJoin checks a join before anything changes: the raft address is no
// other member's, and a server not yet at that address answers on it.
// Its errors are *cluster.ApplyError (an HTTP status and the field).
func (m *Controller) PlanJoin(req api.JoinRequest) (JoinPlan, error) {
	members, err := m.d.Node.Members()
	if err != nil {
		return JoinPlan{}, &cluster.ApplyError{Code: http.StatusServiceUnavailable, Msg: err.Error()}
	}
	var plan JoinPlan
	for _, mb := range members {
		switch {
		case mb.ID == req.ID:
			plan.voter = mb.Voter
			plan.member = mb.Address == req.RaftAddr
		case mb.Address == req.RaftAddr:
			return JoinPlan{}, &cluster.ApplyError{Code: http.StatusConflict, Field: "raft_addr", Msg: fmt.Sprintf("raft address %s is server %s's", req.RaftAddr, mb.ID)}
		}
	}
	if plan.member {
		return plan, nil
	}
	conn, err := net.DialTimeout("tcp", req.RaftAddr, 2*time.Second)
	if err != nil {
		return JoinPlan{}, &cluster.ApplyError{Code: http.StatusBadRequest, Field: "raft_addr",
			Msg: fmt.Sprintf("raft address %s cannot be reached (%v): a server that cannot be reached is not added", req.RaftAddr, err)}
	}
	conn.Close()
	return plan, nil
}

// ApplyJoin makes the configuration change PlanJoin decided and says
// whether the server is a voter. Its errors are *cluster.ApplyError.
func (m *Controller) ApplyJoin(req api.JoinRequest, plan JoinPlan) (voter bool, _ error) {
	if plan.member {
		return plan.voter, nil
	}
	var err error
	if plan.voter {
		err = m.d.Node.AddVoter(req.ID, req.RaftAddr)
	} else {
		err = m.d.Node.AddNonvoter(req.ID, req.RaftAddr)
	}
	if err != nil {
		return false, &cluster.ApplyError{Code: http.StatusServiceUnavailable, Msg: fmt.Sprintf("add server %s: %v", req.ID, err)}
	}
	return plan.voter, nil
}

// Remove records the departure, then removes id from the raft
// configuration (leader only). A leader removing itself steps down once
// the change is committed. A removal that would leave the voters without
// a majority that answers is refused (*cluster.ApplyError, 409).
func (m *Controller) Remove(ctx context.Context, id, who string) error {
	members, err := m.d.Node.Members()
	if err != nil {
		return err
	}
	found := false
	for _, mb := range members {
		found = found || mb.ID == id
	}
	switch {
	case !found:
		return &cluster.ApplyError{Code: http.StatusNotFound, Field: "id", Msg: fmt.Sprintf("server %q is not in the raft configuration", id)}
	case len(members) == 1:
		return &cluster.ApplyError{Code: http.StatusConflict, Field: "id", Msg: fmt.Sprintf("server %q is the only one: it cannot leave (stop it instead)", id)}
	}
	if msg := m.removalBlocker(members, id); msg != "" {
		return &cluster.ApplyError{Code: http.StatusConflict, Field: "id", Msg: msg}
	}
	ev := cluster.NewEvent("cluster.server_left", who, "", "", fmt.Sprintf("server %s leaves the cluster (%d servers remain)", id, len(members)-1))
	if _, err := m.d.Node.Apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{ev}}); err != nil {
		return err
	}
	if err := m.d.Node.RemoveServer(id); err != nil {
		return fmt.Errorf("remove server %s: %w", id, err)
	}
	m.d.Log.Info("server removed from the cluster", "id", id, "by", who)
	return nil
}
