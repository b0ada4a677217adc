package handlers

import (
	"errors"
	"net/http"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/httpapi"
)

// SetMaintenance enables or disables a host's maintenance (PUT
// /v1/hosts/{host}/maintenance).
func (a *API) SetMaintenance(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("host")
	var req api.MaintenanceRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	switch req.Status {
	case "enable":
		return a.enableMaintenance(r, name, req)
	case "disable":
		id, err := a.Maintenance.Exit(r.Context(), name, req, httpapi.Actor(r), "")
		if err != nil {
			return nil, maintenanceError(err)
		}
		return httpapi.Accepted(api.OperationRef{Operation: id}), nil
	default:
		return nil, httpapi.BadField("status", "status %q is not one of enable, disable", req.Status)
	}
}

func (a *API) enableMaintenance(r *http.Request, name string, req api.MaintenanceRequest) (any, error) {
	id, err := a.Maintenance.Enter(r.Context(), name, req, httpapi.Actor(r), "", "")
	if err != nil {
		return nil, maintenanceError(err)
	}
	return httpapi.Accepted(api.OperationRef{Operation: id}), nil
}

// maintenanceError is the answer for a request problem (naming its field,
// with the blockers) or a refused or uncommitted raft write.
func maintenanceError(err error) *httpapi.Error {
	var fe *httpapi.Error
	if errors.As(err, &fe) {
		return fe
	}
	return httpapi.ApplyFailed(err)
}

// Precheck says what enabling a host's maintenance would do now, and
// what blocks it; it changes nothing.
func (a *API) Precheck(w http.ResponseWriter, r *http.Request) (any, error) {
	var req api.MaintenanceRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Status != "" && req.Status != "enable" {
		return nil, httpapi.Errorf(http.StatusBadRequest, "status", "a precheck is for status enable, not %q", req.Status)
	}
	return a.Maintenance.Precheck(r.PathValue("host"), req)
}

// ExitPrecheck lists what left a host for its maintenance, and where each
// VM is now.
func (a *API) ExitPrecheck(w http.ResponseWriter, r *http.Request) (any, error) {
	return a.Maintenance.ExitPrecheck(r.PathValue("host"))
}
