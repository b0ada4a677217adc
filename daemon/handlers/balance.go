package handlers

import (
	"errors"
	"net/http"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/controller/balance"
	"github.com/herd-project/herd/daemon/httpapi"
)

// BalancePlan is the balancing plan for the state now (GET /v1/balance/plan,
// on the leader); it changes nothing.
func (a *API) BalancePlan(w http.ResponseWriter, r *http.Request) (any, error) {
	return a.Balancer.Plan(r.Context()), nil
}

// BalanceApply starts the balancing plan for the state now as one
// operation (POST /v1/balance/apply).
func (a *API) BalanceApply(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := httpapi.DecodeEmpty(r); err != nil {
		return nil, err
	}
	plan := a.Balancer.Plan(r.Context())
	id, err := a.Balancer.Start(r.Context(), plan, httpapi.Actor(r))
	var refused *balance.Refused
	switch {
	case errors.As(err, &refused):
		return nil, httpapi.Errorf(http.StatusConflict, "", "%v", err)
	case err != nil:
		return nil, httpapi.ApplyFailed(err)
	}
	return httpapi.Accepted(api.OperationRef{Operation: id}), nil
}
