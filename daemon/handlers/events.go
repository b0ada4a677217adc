package handlers

import (
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/daemon/httpapi"
	"github.com/herd-project/herd/daemon/wire"
)

// Events lists the action log, filtered by host, VM, operation, time and
// count (GET /v1/events).
func (a *API) Events(w http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	f := cluster.EventFilter{Host: q.Get("host"), VM: q.Get("vm"), Operation: q.Get("operation")}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return nil, httpapi.Errorf(http.StatusBadRequest, "since", "since %q is not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", v)
		}
		f.Since = t
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, httpapi.Errorf(http.StatusBadRequest, "limit", "limit %q is not a positive number", v)
		}
		f.Limit = n
	}
	var events []cluster.Event
	var ferr *httpapi.Error
	a.State.Read(func(st *cluster.State) {
		if f.VM, ferr = eventVM(st, f.VM); ferr == nil {
			events = st.QueryEvents(f)
		}
	})
	if ferr != nil {
		return nil, ferr
	}
	return api.Events{Events: wire.Events(events)}, nil
}

// eventVM resolves the vm of an events query: an id, or the name of one
// VM. A name no VM has now is taken as an id (the log outlives VMs).
func eventVM(st *cluster.State, ref string) (string, *httpapi.Error) {
	if ref == "" || st.VMs[ref] != nil {
		return ref, nil
	}
	vm, ferr := findVMByRef(st, ref)
	switch {
	case ferr == nil:
		return vm.ID, nil
	case ferr.Code == http.StatusNotFound:
		return ref, nil
	}
	return "", ferr
}

var eventTypeRE = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$`)

// NoteType is the only event type people may write: Herd's own event types
// and actors cannot be forged through the API.
const NoteType = "note"

// AppendEvent writes a note into the action log: an operator's
// annotation, whose actor is the caller's token. Only the servers' internal
// token may record other types (a follower's own events, through the
// leader) and name its actor.
func (a *API) AppendEvent(w http.ResponseWriter, r *http.Request) (any, error) {
	var req api.EventRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	p, authed := httpapi.PrincipalOf(r)
	internal := authed && p.Name == config.ServerTokenName
	if req.Type == "" && !internal {
		req.Type = NoteType
	}
	switch {
	case !eventTypeRE.MatchString(req.Type) || len(req.Type) > 64:
		return nil, httpapi.Errorf(http.StatusBadRequest, "type", "type %q is not a dotted lower-case name", req.Type)
	case !internal && req.Type != NoteType:
		return nil, httpapi.Errorf(http.StatusForbidden, "type", "type %q: only %q events may be written through the API; the others are Herd's own", req.Type, NoteType)
	case !internal && req.Actor != "":
		return nil, httpapi.Errorf(http.StatusForbidden, "actor", "actor: a note's actor is the caller's token, it cannot be named")
	case req.Message == "" || len(req.Message) > 2048:
		return nil, httpapi.Errorf(http.StatusBadRequest, "message", "message must be 1 to 2048 bytes")
	case len(req.Actor) > 128:
		return nil, httpapi.Errorf(http.StatusBadRequest, "actor", "actor is longer than 128 bytes")
	}
	st := a.State.State()
	if req.Host != "" && st.Hosts[req.Host] == nil {
		return nil, httpapi.Errorf(http.StatusNotFound, "host", "host %q not found", req.Host)
	}
	if req.VM != "" {
		vm, ferr := findVMByRef(st, req.VM)
		if ferr != nil {
			return nil, ferr
		}
		req.VM = vm.ID
	}
	who := httpapi.Actor(r)
	if req.Actor != "" {
		who = req.Actor + " (" + who + ")"
	}
	e := cluster.NewEvent(req.Type, who, req.Host, req.VM, req.Message)
	if _, err := a.Raft.Apply(r.Context(), &cluster.AppendEvents{Events: []cluster.Event{e}}); err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	return httpapi.Reply{Code: http.StatusCreated, Body: e}, nil
}
