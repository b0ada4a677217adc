package handlers

import (
	"io"
	"net/http"

	"github.com/herd-project/herd/daemon/httpapi"
)

// AlertWebhook takes Alertmanager's webhook (POST /v1/alerts/webhook).
func (a *API) AlertWebhook(w http.ResponseWriter, r *http.Request) (any, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, httpapi.Errorf(http.StatusBadRequest, "", "read body: %v", err)
	}
	res, werr := a.Webhook.Handle(r.Context(), body, httpapi.Actor(r))
	if werr != nil {
		return nil, httpapi.Errorf(werr.Code, werr.Field, "%s", werr.Msg)
	}
	return res, nil
}
