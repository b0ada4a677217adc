package handlers

import (
	"net/http"
	"slices"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/httpapi"
	"github.com/herd-project/herd/daemon/wire"
)

// Operations lists the operations, by host and state (GET /v1/operations).
func (a *API) Operations(w http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	host, state := q.Get("host"), q.Get("state")
	if state != "" && !slices.Contains([]string{"running", "succeeded", "failed", "cancelled"}, state) {
		return nil, httpapi.Errorf(http.StatusBadRequest, "state", "state %q is not one of running, succeeded, failed, cancelled", state)
	}
	st := a.State.State()
	out := api.Operations{Operations: []api.Operation{}}
	for _, op := range st.SortedOperations() {
		if (host == "" || op.Host == host || op.TargetHost == host) && (state == "" || string(op.State) == state) {
			out.Operations = append(out.Operations, wire.Operation(op))
		}
	}
	return out, nil
}

// Operation is one operation with its steps (GET /v1/operations/{id}).
func (a *API) Operation(w http.ResponseWriter, r *http.Request) (any, error) {
	op := a.State.Operation(r.PathValue("id"))
	if op == nil {
		return nil, httpapi.Errorf(http.StatusNotFound, "operation", "operation %q not found", r.PathValue("id"))
	}
	return wire.Operation(op), nil
}

// CancelOperation stops an operation: steps in flight finish, nothing new
// starts (POST /v1/operations/{id}/cancel).
func (a *API) CancelOperation(w http.ResponseWriter, r *http.Request) (any, error) {
	// Cancelling what is cancelled already (or stopping) answers as the
	// first cancel did, and logs nothing more.
	if op := a.State.Operation(r.PathValue("id")); op != nil && (op.Cancelled || op.State == cluster.OpCancelled) {
		if err := httpapi.DecodeEmpty(r); err != nil {
			return nil, err
		}
		return wire.Operation(op), nil
	}
	return a.operationCommand(r, func(id string, ev cluster.Event) cluster.Command {
		ev.Type, ev.Message = "operation.cancelled", "operation "+id+" cancelled: steps in flight finish, nothing new starts"
		return &cluster.CancelOperation{Op: id, Time: ev.Time, Event: ev}
	})
}

// RetryOperation starts an operation's failed and cancelled steps over
// (POST /v1/operations/{id}/retry).
func (a *API) RetryOperation(w http.ResponseWriter, r *http.Request) (any, error) {
	return a.operationCommand(r, func(id string, ev cluster.Event) cluster.Command {
		ev.Type, ev.Message = "operation.retried", "operation "+id+" retried: failed and cancelled steps start over"
		return &cluster.RetryOperation{Op: id, Time: ev.Time, Event: ev}
	})
}

func (a *API) operationCommand(r *http.Request, build func(id string, ev cluster.Event) cluster.Command) (any, error) {
	if err := httpapi.DecodeEmpty(r); err != nil {
		return nil, err
	}
	id := r.PathValue("id")
	op := a.State.Operation(id)
	if op == nil {
		return nil, httpapi.Errorf(http.StatusNotFound, "operation", "operation %q not found", id)
	}
	ev := cluster.NewEvent("", httpapi.Actor(r), op.Host, "", "")
	ev.Operation = id
	if _, err := a.Raft.Apply(r.Context(), build(id, ev)); err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	return wire.Operation(a.State.Operation(id)), nil
}
