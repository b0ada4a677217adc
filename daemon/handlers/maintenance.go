package handlers

import (
	"errors"
	"net/http"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/httpapi"
)

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
