package daemon

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/daemon/httpapi"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/yamlfile"
)

func (s *Server) handleGetPolicy(w http.ResponseWriter, r *http.Request) (any, error) {
	st := s.node.FSM().State()
	var body []byte
	version, hash := 0, ""
	if st.Policy != nil {
		body, version, hash = st.Policy.YAML, st.Policy.Version, st.Policy.Hash
	} else {
		d := s.Policy()
		y, err := d.YAML()
		if err != nil {
			return nil, httpapi.Errorf(http.StatusInternalServerError, "", "encode default policy: %v", err)
		}
		body, hash = y, d.Hash()
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("X-Herd-Policy-Version", strconv.Itoa(version))
	w.Header().Set("X-Herd-Policy-Hash", hash)
	w.WriteHeader(http.StatusOK)
	w.Write(body)
	return nil, nil
}

// readPolicyBody parses and validates a YAML body; its error is a 400
// with every problem and its line:column.
func readPolicyBody(r *http.Request) (*policy.Document, error) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, httpapi.Errorf(http.StatusRequestEntityTooLarge, "", "policy larger than %d bytes", mbe.Limit)
		}
		return nil, httpapi.BadField("", "read policy: %v", err)
	}
	doc, err := policy.Parse("policy.yaml", data)
	if err != nil {
		return nil, policyErrors(err)
	}
	return doc, nil
}

// policyErrors is the 400 for an invalid policy: every problem with its
// position.
func policyErrors(err error) *httpapi.Error {
	body := &httpapi.Error{Code: http.StatusBadRequest, Msg: "invalid policy"}
	var errs yamlfile.Errors
	var one *yamlfile.Error
	switch {
	case errors.As(err, &errs):
	case errors.As(err, &one):
		errs = yamlfile.Errors{one}
	default:
		body.Msg = "invalid policy: " + err.Error()
	}
	for _, e := range errs {
		body.Details = append(body.Details, api.ErrorDetail{Line: e.Line, Column: e.Column, Path: e.Path, Message: e.Error()})
	}
	if len(errs) > 0 {
		body.Field = errs[0].Path
		body.Msg = fmt.Sprintf("invalid policy: %d problem(s); first: %s", len(errs), errs[0].Error())
	}
	return body
}

func (s *Server) handleValidatePolicy(w http.ResponseWriter, r *http.Request) (any, error) {
	doc, err := readPolicyBody(r)
	if err != nil {
		return nil, err
	}
	return api.PolicyInfo{Hash: doc.Hash()}, nil
}

func (s *Server) handlePutPolicy(w http.ResponseWriter, r *http.Request) (any, error) {
	ifVersion := 0
	if v := r.Header.Get("If-Match"); v != "" {
		n, err := strconv.Atoi(strings.Trim(v, `"`))
		if err != nil || n < 1 {
			return nil, httpapi.Errorf(http.StatusBadRequest, "If-Match", "If-Match %q is not a policy version", v)
		}
		ifVersion = n
	}
	doc, err := readPolicyBody(r)
	if err != nil {
		return nil, err
	}
	source := r.URL.Query().Get("source")
	if source == "" {
		source = "api"
	}
	if len(source) > 256 {
		return nil, httpapi.Errorf(http.StatusBadRequest, "source", "source is longer than 256 bytes")
	}
	if p := httpapi.BadText(source); p != "" {
		return nil, httpapi.Errorf(http.StatusBadRequest, "source", "source: %s", p)
	}
	p, err := s.applyPolicy(r.Context(), doc, source, httpapi.Actor(r), ifVersion)
	if err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	return api.PolicyInfo{Version: p.Version, Hash: p.Hash, Source: p.Source, Updated: p.Updated}, nil
}

var eventTypeRE = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$`)

// noteType is the only event type people may write: Herd's own event types
// and actors cannot be forged through the API.
const noteType = "note"

// handleAppendEvent writes a note into the action log: an operator's
// annotation, whose actor is the caller's token. Only the servers' internal
// token may record other types (a follower's own events, through the
// leader) and name its actor.
func (s *Server) handleAppendEvent(w http.ResponseWriter, r *http.Request) (any, error) {
	var req api.EventRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	p, authed := httpapi.PrincipalOf(r)
	internal := authed && p.Name == config.ServerTokenName
	if req.Type == "" && !internal {
		req.Type = noteType
	}
	switch {
	case !eventTypeRE.MatchString(req.Type) || len(req.Type) > 64:
		return nil, httpapi.Errorf(http.StatusBadRequest, "type", "type %q is not a dotted lower-case name", req.Type)
	case !internal && req.Type != noteType:
		return nil, httpapi.Errorf(http.StatusForbidden, "type", "type %q: only %q events may be written through the API; the others are Herd's own", req.Type, noteType)
	case !internal && req.Actor != "":
		return nil, httpapi.Errorf(http.StatusForbidden, "actor", "actor: a note's actor is the caller's token, it cannot be named")
	case req.Message == "" || len(req.Message) > 2048:
		return nil, httpapi.Errorf(http.StatusBadRequest, "message", "message must be 1 to 2048 bytes")
	case len(req.Actor) > 128:
		return nil, httpapi.Errorf(http.StatusBadRequest, "actor", "actor is longer than 128 bytes")
	}
	st := s.node.FSM().State()
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
	if _, err := s.node.Apply(r.Context(), &cluster.AppendEvents{Events: []cluster.Event{e}}); err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	return httpapi.Reply{Code: http.StatusCreated, Body: e}, nil
}
