// Package httpapi is the HTTP side of a Herd server: the router (what is
// answered locally, what goes to the leader), authentication and roles,
// the write rate limit, idempotency keys, request checks, instrumentation,
// and the one way a handler answers: it returns a value (200 with JSON, or
// a Reply) or an error (an *Error names the status and the field). The
// server is seen through the Cluster interface only.
package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/raftnode"
	"github.com/herd-project/herd/daemon/api"
)

// MaxBody bounds every request body.
const MaxBody = 1 << 20

// Error is a handler's answer other than 2xx: the HTTP status, the field
// of the request it is about (empty when none), and the message; sent as
// an api.Error.
type Error struct {
	Code  int
	Field string
	Msg   string
	// Blockers say what blocks a refused maintenance request.
	Blockers []api.Blocker
	// Details list every problem of a refused document (a policy).
	Details []api.ErrorDetail
}

func (e *Error) Error() string { return e.Msg }

// RequestError marks a request the server refused (nothing changed), as
// opposed to a raft write that did not commit.
func (e *Error) RequestError() bool { return true }

// Errorf is an Error with a formatted message.
func Errorf(code int, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// BadField is a 400 about field.
func BadField(field, format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, field, format, args...)
}

// Conflict is a 409 about field.
func Conflict(field, format string, args ...any) *Error {
	return Errorf(http.StatusConflict, field, format, args...)
}

// NotFound is a 404 about field.
func NotFound(field, format string, args ...any) *Error {
	return Errorf(http.StatusNotFound, field, format, args...)
}

// Unavailable is a 503: nothing was done, try again.
func Unavailable(format string, args ...any) *Error {
	return Errorf(http.StatusServiceUnavailable, "", format, args...)
}

// ApplyFailed is the answer for a failed raft write: the state machine's
// refusal (its status and field), or 503 when it was not committed.
func ApplyFailed(err error) *Error {
	var ae *cluster.ApplyError
	switch {
	case errors.As(err, &ae):
		return &Error{Code: ae.Code, Field: ae.Field, Msg: ae.Msg}
	case errors.Is(err, raftnode.ErrNotLeader):
		return Unavailable("%v", err)
	default:
		return Unavailable("not committed: %v", err)
	}
}

// FromAPI is the Error another server answered (code and body), passed on.
func FromAPI(code int, body api.Error) *Error {
	return &Error{Code: code, Field: body.Field, Msg: body.Error, Blockers: body.Blockers, Details: body.Errors}
}

// Reply is an answer other than 200: Body is sent as JSON with Code, or
// nothing when Body is nil.
type Reply struct {
	Code int
	Body any
}

// NoContent is the 204 answer.
var NoContent = Reply{Code: http.StatusNoContent}

// Accepted is a 202 with body.
func Accepted(body any) Reply { return Reply{Code: http.StatusAccepted, Body: body} }

// HandlerFunc answers a request: a value (sent as JSON with 200, or a
// Reply), or an error (an *Error, or any other error as a 500). A handler
// that answered through w itself returns nil, nil.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) (any, error)

// Wrap turns a HandlerFunc into an http.HandlerFunc.
func Wrap(h HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out, err := h(w, r)
		if err != nil {
			WriteErr(w, err)
			return
		}
		switch v := out.(type) {
		case nil:
		case Reply:
			if v.Body == nil {
				w.WriteHeader(v.Code)
				return
			}
			WriteJSON(w, v.Code, v.Body)
		default:
			WriteJSON(w, http.StatusOK, v)
		}
	}
}

// WriteJSON sends v as indented JSON with code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteErr sends err as an api.Error: an *Error with its status and field,
// any other error as a 500.
func WriteErr(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = Errorf(http.StatusInternalServerError, "", "%v", err)
	}
	WriteJSON(w, e.Code, api.Error{Error: e.Msg, Field: e.Field, Blockers: e.Blockers, Errors: e.Details})
}

// writeError sends an error answer.
func writeError(w http.ResponseWriter, code int, field, format string, args ...any) {
	WriteErr(w, Errorf(code, field, format, args...))
}

// DecodeBody reads a strict JSON body into v: unknown fields, trailing data
// and control characters in strings are errors that name the field.
func DecodeBody(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return Errorf(http.StatusUnsupportedMediaType, "", "content type %q: want application/json", ct)
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		field := ""
		var te *json.UnmarshalTypeError
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &te):
			field = te.Field
			err = fmt.Errorf("%s must be %s", te.Field, te.Type)
		case errors.As(err, &mbe):
			return Errorf(http.StatusRequestEntityTooLarge, "", "body larger than %d bytes", mbe.Limit)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field = strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			err = fmt.Errorf("unknown field %q", field)
		case errors.Is(err, io.EOF):
			err = errors.New("empty body: a JSON object is required")
		}
		return BadField(field, "bad request body: %v", err)
	}
	if dec.More() {
		return BadField("", "bad request body: data after the JSON object")
	}
	if field, problem := checkStrings(v); problem != "" {
		return BadField(field, "%s: %s", field, problem)
	}
	return nil
}

// DecodeEmpty reads an optional body that, when present, must be an empty
// JSON object.
func DecodeEmpty(r *http.Request) error {
	if r.ContentLength == 0 {
		return nil
	}
	var empty struct{}
	return DecodeBody(r, &empty)
}
