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
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/yamlfile"
)

func (s *Server) handleGetPolicy(w http.ResponseWriter, r *http.Request) {
	st := s.node.FSM().State()
	var body []byte
	version, hash := 0, ""
	if st.Policy != nil {
		body, version, hash = st.Policy.YAML, st.Policy.Version, st.Policy.Hash
	} else {
		d := s.Policy()
		y, err := d.YAML()
		if err != nil {
			writeError(w, http.StatusInternalServerError, "", "encode default policy: %v", err)
			return
		}
		body, hash = y, d.Hash()
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("X-Herd-Policy-Version", strconv.Itoa(version))
	w.Header().Set("X-Herd-Policy-Hash", hash)
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// readPolicyBody parses and validates a YAML body; on failure it answers
// 400 with every problem and its line:column.
func readPolicyBody(w http.ResponseWriter, r *http.Request) (*policy.Document, bool) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "", "policy larger than %d bytes", mbe.Limit)
			return nil, false
		}
		writeError(w, http.StatusBadRequest, "", "read policy: %v", err)
		return nil, false
	}
	doc, err := policy.Parse("policy.yaml", data)
	if err != nil {
		writePolicyErrors(w, err)
		return nil, false
	}
	return doc, true
}

func writePolicyErrors(w http.ResponseWriter, err error) {
	body := api.Error{Error: "invalid policy"}
	var errs yamlfile.Errors
	var one *yamlfile.Error
	switch {
	case errors.As(err, &errs):
	case errors.As(err, &one):
		errs = yamlfile.Errors{one}
	default:
		body.Error = "invalid policy: " + err.Error()
	}
	for _, e := range errs {
		body.Errors = append(body.Errors, api.ErrorDetail{Line: e.Line, Column: e.Column, Path: e.Path, Message: e.Error()})
	}
	if len(errs) > 0 {
		body.Field = errs[0].Path
		body.Error = fmt.Sprintf("invalid policy: %d problem(s); first: %s", len(errs), errs[0].Error())
	}
	writeJSON(w, http.StatusBadRequest, body)
}

func (s *Server) handleValidatePolicy(w http.ResponseWriter, r *http.Request) {
	doc, ok := readPolicyBody(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, api.PolicyInfo{Hash: doc.Hash()})
}

func (s *Server) handlePutPolicy(w http.ResponseWriter, r *http.Request) {
	ifVersion := 0
	if v := r.Header.Get("If-Match"); v != "" {
		n, err := strconv.Atoi(strings.Trim(v, `"`))
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "If-Match", "If-Match %q is not a policy version", v)
			return
		}
		ifVersion = n
	}
	doc, ok := readPolicyBody(w, r)
	if !ok {
		return
	}
	source := r.URL.Query().Get("source")
	if source == "" {
		source = "api"
	}
	if len(source) > 256 {
		writeError(w, http.StatusBadRequest, "source", "source is longer than 256 bytes")
		return
	}
	if p := badText(source); p != "" {
		writeError(w, http.StatusBadRequest, "source", "source: %s", p)
		return
	}
	p, err := s.applyPolicy(r.Context(), doc, source, actor(r), ifVersion)
	if err != nil {
		writeApplyError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.PolicyInfo{Version: p.Version, Hash: p.Hash, Source: p.Source, Updated: p.Updated})
}

var eventTypeRE = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$`)

// noteType is the only event type people may write: Herd's own event types
// and actors cannot be forged through the API.
const noteType = "note"

// handleAppendEvent writes a note into the action log: an operator's
// annotation, whose actor is the caller's token. Only the servers' internal
// token may record other types (a follower's own events, through the
// leader) and name its actor.
func (s *Server) handleAppendEvent(w http.ResponseWriter, r *http.Request) {
	var req api.EventRequest
	if !decodeBody(w, r, &req) {
		return
	}
	p, authed := principalOf(r)
	internal := authed && p.Name == config.ServerTokenName
	if req.Type == "" && !internal {
		req.Type = noteType
	}
	switch {
	case !eventTypeRE.MatchString(req.Type) || len(req.Type) > 64:
		writeError(w, http.StatusBadRequest, "type", "type %q is not a dotted lower-case name", req.Type)
		return
	case !internal && req.Type != noteType:
		writeError(w, http.StatusForbidden, "type", "type %q: only %q events may be written through the API; the others are Herd's own", req.Type, noteType)
		return
	case !internal && req.Actor != "":
		writeError(w, http.StatusForbidden, "actor", "actor: a note's actor is the caller's token, it cannot be named")
		return
	case req.Message == "" || len(req.Message) > 2048:
		writeError(w, http.StatusBadRequest, "message", "message must be 1 to 2048 bytes")
		return
	case len(req.Actor) > 128:
		writeError(w, http.StatusBadRequest, "actor", "actor is longer than 128 bytes")
		return
	}
	st := s.node.FSM().State()
	if req.Host != "" && st.Hosts[req.Host] == nil {
		writeError(w, http.StatusNotFound, "host", "host %q not found", req.Host)
		return
	}
	if req.VM != "" {
		vm, ferr := findVMByRef(st, req.VM)
		if ferr != nil {
			ferr.write(w)
			return
		}
		req.VM = vm.ID
	}
	who := actor(r)
	if req.Actor != "" {
		who = req.Actor + " (" + who + ")"
	}
	e := cluster.NewEvent(req.Type, who, req.Host, req.VM, req.Message)
	if _, err := s.node.Apply(r.Context(), &cluster.AppendEvents{Events: []cluster.Event{e}}); err != nil {
		writeApplyError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, e)
}
