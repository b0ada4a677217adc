package handlers

import (
	"net/http"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/httpapi"
)

// Healthz says the process answers (GET /healthz).
func (a *API) Healthz(w http.ResponseWriter, r *http.Request) (any, error) {
	return api.Health{Status: "ok", Time: time.Now().UTC()}, nil
}

// Readyz: ready when a leader is known, this server is in touch with
// it, and it has applied the leader's commit index as the leader reported
// it (a restarted server first replays its log).
func (a *API) Readyz(w http.ResponseWriter, r *http.Request) (any, error) {
	a.Freshness(w.Header())
	if stale := w.Header().Get(api.StaleHeader); stale != "" {
		return httpapi.Reply{Code: http.StatusServiceUnavailable, Body: api.Health{Status: "not ready", Reason: stale, Time: time.Now().UTC()}}, nil
	}
	return api.Health{Status: "ready", Time: time.Now().UTC()}, nil
}
