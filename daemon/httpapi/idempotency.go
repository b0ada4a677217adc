package httpapi

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"sync"
	"time"
)

// Retries of a write that carry the same Idempotency-Key header get the
// first answer instead of doing the write again (as Stripe's and the IETF
// draft's Idempotency-Key). The leader keeps answers for idemTTL, per
// caller; a key reused with another request is refused. Answers are kept
// in the leader's memory: a new leader does not know the old one's keys.
const (
	idemHeader  = "Idempotency-Key"
	idemTTL     = time.Hour
	idemMax     = 10000
	idemMaxKey  = 255
	idemReplay  = "Idempotent-Replayed"
	idemPending = 0
)

type idemEntry struct {
	request [sha256.Size]byte
	done    chan struct{}
	code    int
	header  http.Header
	body    []byte
	at      time.Time
}

type idemStore struct {
	mu      sync.Mutex
	entries map[string]*idemEntry
}

// idempotent wraps a write served on the leader.
func (rt *Router) idempotent(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get(idemHeader)
		if key == "" {
			h(w, r)
			return
		}
		if len(key) > idemMaxKey || BadText(key) != "" {
			writeError(w, http.StatusBadRequest, idemHeader, "%s must be 1 to %d printable characters", idemHeader, idemMaxKey)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			writeError(w, http.StatusRequestEntityTooLarge, "", "read body: %v", err)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		caller := r.Header.Get("Authorization")
		if p, ok := PrincipalOf(r); ok {
			caller = p.Name
		}
		sum := sha256.Sum256(append([]byte(r.Method+" "+r.URL.RequestURI()+"\n"), body...))
		id := caller + "\x00" + key
		e, first := rt.idem.claim(id, sum)
		if !first {
			select {
			case <-e.done:
			case <-r.Context().Done():
				return
			}
			switch {
			case e.request != sum:
				writeError(w, http.StatusUnprocessableEntity, idemHeader, "%s %q was used for another request", idemHeader, key)
			case e.code == idemPending:
				// The first try was not answered with a result to keep
				// (5xx: nothing committed): this one runs afresh.
				rt.idem.forget(id, e)
				rt.idempotent(h)(w, r)
			default:
				for k, v := range e.header {
					w.Header()[k] = v
				}
				w.Header().Set(idemReplay, "true")
				w.WriteHeader(e.code)
				w.Write(e.body)
			}
			return
		}
		rec := &bodyRecorder{ResponseWriter: w, code: http.StatusOK}
		h(rec, r)
		rt.idem.finish(id, e, rec)
	}
}

// claim returns the entry for id and whether the caller is the first.
func (st *idemStore) claim(id string, sum [sha256.Size]byte) (*idemEntry, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.entries == nil {
		st.entries = map[string]*idemEntry{}
	}
	now := time.Now()
	if e := st.entries[id]; e != nil && now.Sub(e.at) < idemTTL {
		return e, false
	}
	if len(st.entries) >= idemMax {
		for k, e := range st.entries {
			if now.Sub(e.at) >= idemTTL || len(st.entries) >= idemMax {
				select {
				case <-e.done:
					delete(st.entries, k)
				default:
				}
			}
		}
	}
	e := &idemEntry{request: sum, done: make(chan struct{}), at: now}
	st.entries[id] = e
	return e, true
}

// finish keeps a 2xx or 4xx answer; a 5xx changed nothing, so the key is
// free for a retry.
func (st *idemStore) finish(id string, e *idemEntry, rec *bodyRecorder) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if rec.code < 500 {
		e.code, e.header, e.body = rec.code, rec.Header().Clone(), rec.buf.Bytes()
	} else if st.entries[id] == e {
		delete(st.entries, id)
	}
	close(e.done)
}

func (st *idemStore) forget(id string, e *idemEntry) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.entries[id] == e {
		delete(st.entries, id)
	}
}

// bodyRecorder passes an answer through and keeps a copy.
type bodyRecorder struct {
	http.ResponseWriter
	code int
	buf  bytes.Buffer
}

func (r *bodyRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *bodyRecorder) Write(p []byte) (int, error) {
	r.buf.Write(p)
	return r.ResponseWriter.Write(p)
}
