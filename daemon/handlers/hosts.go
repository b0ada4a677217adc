package handlers

import (
	"fmt"
	"net/http"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/httpapi"
	"github.com/herd-project/herd/daemon/wire"
)

// Hosts lists every host with its usage (GET /v1/hosts).
func (a *API) Hosts(w http.ResponseWriter, r *http.Request) (any, error) {
	doc, now := a.Policy(), time.Now()
	out := api.Hosts{Hosts: []api.Host{}}
	// Under the read lock, without copying the state: hosts are
	// immutable values, and the FSM keeps the VMs' usage as entries change
	// them.
	a.State.ReadWithUsage(func(st *cluster.State, u *cluster.Usage) {
		l := newListingWithUsage(doc, st, u.Hosts, now)
		out.Hosts = make([]api.Host, 0, len(st.Hosts))
		for _, name := range st.HostNames() {
			out.Hosts = append(out.Hosts, l.host(st.Hosts[name], false))
		}
	})
	return out, nil
}

// Host is one host with its stale copies and silence (GET
// /v1/hosts/{host}).
func (a *API) Host(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("host")
	doc, now := a.Policy(), time.Now()
	var out *api.Host
	// As Hosts: no copy of the state, no pass over every VM.
	a.State.ReadWithUsage(func(st *cluster.State, u *cluster.Usage) {
		if h, ok := st.Hosts[name]; ok {
			v := newListingWithUsage(doc, st, u.Hosts, now).host(h, true)
			out = &v
		}
	})
	if out == nil {
		return nil, httpapi.Errorf(http.StatusNotFound, "host", "host %q not found", name)
	}
	return out, nil
}

// HostStatus sets a host's admin status, or confirms it fenced (PUT
// /v1/hosts/{host}/status).
func (a *API) HostStatus(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("host")
	var req api.StatusRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	status := cluster.AdminStatus(req.Status)
	if !status.Valid() {
		return nil, httpapi.Errorf(http.StatusBadRequest, "status", "status %q is not one of AVAILABLE, NOT_ACCEPTING, MAINTENANCE, OFFLINE", req.Status)
	}
	if req.ConfirmFenced && status != cluster.Offline {
		return nil, httpapi.Errorf(http.StatusBadRequest, "confirm_fenced", "confirm_fenced goes with status OFFLINE only")
	}
	if len(req.Reason) > 1024 {
		return nil, httpapi.Errorf(http.StatusBadRequest, "reason", "reason is longer than 1024 bytes")
	}
	st := a.State.State()
	h, ok := st.Hosts[name]
	if !ok {
		return nil, httpapi.Errorf(http.StatusNotFound, "host", "host %q not found", name)
	}
	if status == cluster.InMaintenance && !req.ConfirmFenced {
		// The same as enabling maintenance without moving anything.
		return a.enableMaintenance(r, name, api.MaintenanceRequest{Status: "enable", Migrate: "none"})
	}
	if req.ConfirmFenced && h.Health == cluster.HealthAlive {
		return nil, httpapi.Errorf(http.StatusConflict, "confirm_fenced", "host %s is alive (%s): Herd still hears from it, so it is not fenced; power it off or isolate it first", name, h.Connection)
	}
	if h.Maintenance != cluster.MaintenanceOff && !req.ConfirmFenced {
		return nil, httpapi.Errorf(http.StatusConflict, "status", "host %s maintenance is %s: use PUT /v1/hosts/%s/maintenance to enter or leave maintenance", name, h.Maintenance, name)
	}
	who := httpapi.Actor(r)
	msg := fmt.Sprintf("admin status %s → %s%s", h.Admin, status, reasonSuffix(req.Reason))
	if req.ConfirmFenced {
		msg += "; operator confirmed the host is fenced"
		a.Metrics.FencingAttempts.WithLabelValues(name, cluster.FenceOperator, "success").Inc()
	}
	if _, err := a.Raft.Apply(r.Context(), &cluster.SetHostStatus{Host: name, Status: status, Reason: req.Reason,
		ConfirmFenced: req.ConfirmFenced, Event: cluster.NewEvent("host.status", who, name, "", msg)}); err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	st = a.State.State()
	return wire.Host(st.Hosts[name], st.Usage()[name], len(st.StaleOn(name))), nil
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return ": " + r
}
