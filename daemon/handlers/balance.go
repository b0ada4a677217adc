package daemon

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/controller/balance"
	"github.com/herd-project/herd/daemon/controller/recovery"
	"github.com/herd-project/herd/daemon/httpapi"
)

func (s *Server) handleBalancePlan(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.balancer.Plan(r.Context()), nil
}

func (s *Server) handleBalanceApply(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := httpapi.DecodeEmpty(r); err != nil {
		return nil, err
	}
	plan := s.balancer.Plan(r.Context())
	id, err := s.balancer.Start(r.Context(), plan, httpapi.Actor(r))
	var refused *balance.Refused
	switch {
	case errors.As(err, &refused):
		return nil, httpapi.Errorf(http.StatusConflict, "", "%v", err)
	case err != nil:
		return nil, httpapi.ApplyFailed(err)
	}
	return httpapi.Accepted(api.OperationRef{Operation: id}), nil
}

// frozenHosts are the hosts of the driver groups where an evacuation or a
// recovery is under way: its VMs land on any of them, so balancing there
// would move VMs the operation just placed.
func frozenHosts(st *cluster.State) map[string]string {
	out := map[string]string{}
	for _, op := range runningOps(st) {
		if op.Kind != cluster.OpEvacuate && op.Kind != cluster.OpRecover || op.Kind == cluster.OpRecover && !recovery.PlacesVMs(op) {
			continue
		}
		src := st.Hosts[op.Host]
		if src == nil {
			continue
		}
		why := fmt.Sprintf("%s %s of host %s under way", op.Kind, op.ID, op.Host)
		for name, h := range st.Hosts {
			if _, seen := out[name]; !seen && h.Driver == src.Driver && h.Group == src.Group {
				out[name] = why
			}
		}
	}
	return out
}
