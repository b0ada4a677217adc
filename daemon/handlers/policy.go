package handlers

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/httpapi"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/yamlfile"
)

// GetPolicy is the policy in force, as YAML, with its version and hash
// in headers (GET /v1/policy).
func (a *API) GetPolicy(w http.ResponseWriter, r *http.Request) (any, error) {
	st := a.State.State()
	var body []byte
	version, hash := 0, ""
	if st.Policy != nil {
		body, version, hash = st.Policy.YAML, st.Policy.Version, st.Policy.Hash
	} else {
		d := a.Policy()
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

// ValidatePolicy checks a policy without applying it (POST
// /v1/policy/validate).
func (a *API) ValidatePolicy(w http.ResponseWriter, r *http.Request) (any, error) {
	doc, err := readPolicyBody(r)
	if err != nil {
		return nil, err
	}
	return api.PolicyInfo{Hash: doc.Hash()}, nil
}

// PutPolicy puts a policy in force (PUT /v1/policy); with If-Match, only
// while the policy in force is at that version.
func (a *API) PutPolicy(w http.ResponseWriter, r *http.Request) (any, error) {
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
	p, err := a.ApplyPolicy(r.Context(), doc, source, httpapi.Actor(r), ifVersion)
	if err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	return *p, nil
}
