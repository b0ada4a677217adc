package httpapi

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/metrics"
)

// ForwardedHeader names the server that forwarded a request to the leader.
const ForwardedHeader = "X-Herd-Forwarded-By"

// Cluster is what the router needs of the server it serves.
type Cluster interface {
	// IsLeader reports whether this server leads now.
	IsLeader() bool
	// LeaderAPI is the leader's API base URL, "" when unknown.
	LeaderAPI() string
	// VerifyLeader confirms with a quorum that this server still leads.
	VerifyLeader() error
	// SetFreshness sets the headers that say how current this server's
	// state is (api.StaleHeader when it may not be).
	SetFreshness(h http.Header)
}

// Options configure a Router.
type Options struct {
	Cluster Cluster
	// Name is this server's name, sent along a forwarded request.
	Name string
	// Transport carries requests forwarded to the leader.
	Transport http.RoundTripper
	// Tokens are the API tokens; nil serves everything without auth (dev
	// mode).
	Tokens  *config.Tokens
	Limiter *WriteLimiter
	Metrics *metrics.Metrics
}

// Router registers the API's routes, each with the role it needs, and
// says where each is answered: Local (this server, from its own state),
// OnLeader (the leader: a follower forwards it) or Self.
type Router struct {
	o    Options
	mux  *http.ServeMux
	idem idemStore
}

// NewRouter is a router with no routes.
func NewRouter(o Options) *Router {
	return &Router{o: o, mux: http.NewServeMux()}
}

// Self registers h answered by this server whatever its role, without
// freshness marks (health, its own stats, leaving). A token with role need
// is required (when auth is on), path parameters are checked, and requests
// that need operate or more count against the client's write rate.
func (rt *Router) Self(pattern string, need config.Role, h http.Handler) {
	h = checkPathParams(h)
	if need >= config.RoleOperate {
		h = rt.limitWrites(h)
	}
	rt.mux.Handle(pattern, rt.instrument(route(pattern), rt.authorize(need, h)))
}

// Local registers a read this server answers from its own state, marked
// with how current that is; ?stale=false has the leader answer it.
func (rt *Router) Local(pattern string, need config.Role, h HandlerFunc) {
	rt.Self(pattern, need, rt.fresh(Wrap(h)))
}

// OnLeader registers a request the leader answers (a follower forwards it,
// after checking the token; the leader checks it again), so that a 2xx
// from any server means committed. A retry with the same Idempotency-Key
// gets the first answer.
func (rt *Router) OnLeader(pattern string, need config.Role, h HandlerFunc) {
	rt.Self(pattern, need, rt.onLeader(rt.idempotent(Wrap(h))))
}

// Lease registers an agent's lease call: on the leader, with role operate,
// but not counted against people's write rate (agents renew every few
// seconds) and without idempotency keys.
func (rt *Router) Lease(pattern string, h HandlerFunc) {
	rt.mux.Handle(pattern, rt.instrument(route(pattern), rt.authorize(config.RoleOperate, checkPathParams(rt.onLeader(Wrap(h))))))
}

// Metrics serves the Prometheus handler, with role read unless open.
func (rt *Router) Metrics(h http.Handler, open bool) {
	need := config.RoleRead
	if open {
		need = config.RoleNone
	}
	rt.mux.Handle("GET /metrics", rt.authorize(need, h))
}

// Handler is the API: the routes, and a 404 naming the request for
// anything else.
func (rt *Router) Handler() http.Handler {
	rt.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "", "no such endpoint: %s %s", r.Method, r.URL.Path)
	})
	return rt.mux
}

// route is a pattern's path, the label of its metrics.
func route(pattern string) string {
	if _, p, ok := strings.Cut(pattern, " "); ok {
		return p
	}
	return pattern
}

// statusRecorder remembers the status code for metrics.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (rt *Router) instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		h.ServeHTTP(rec, r)
		rt.o.Metrics.APIRequests.WithLabelValues(route, r.Method, strconv.Itoa(rec.code)).Inc()
		rt.o.Metrics.APIRequestDuration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// onLeader runs h on the leader: a follower forwards the request to the
// leader's API, so a 2xx from any server means committed.
func (rt *Router) onLeader(h http.HandlerFunc) http.HandlerFunc {
	m := rt.o.Metrics
	return func(w http.ResponseWriter, r *http.Request) {
		if rt.o.Cluster.IsLeader() {
			h(w, r)
			return
		}
		if r.Header.Get(ForwardedHeader) != "" {
			// Forwarded to us, but we lost leadership meanwhile: no loops.
			m.ForwardedRequests.WithLabelValues("no_leader").Inc()
			writeError(w, http.StatusServiceUnavailable, "", "leadership changed; try again")
			return
		}
		addr := rt.o.Cluster.LeaderAPI()
		if addr == "" {
			m.ForwardedRequests.WithLabelValues("no_leader").Inc()
			writeError(w, http.StatusServiceUnavailable, "", "no raft leader: a majority of the voting servers must be up and in touch to elect one; until then nothing can be written (or read with --consistent)")
			return
		}
		target, err := url.Parse(addr)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "", "leader address %q: %v", addr, err)
			return
		}
		proxy := httputil.NewSingleHostReverseProxy(target)
		// The original Authorization header goes along: the leader
		// checks the caller's token itself.
		proxy.Transport = rt.o.Transport
		proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
			m.ForwardedRequests.WithLabelValues("error").Inc()
			writeError(w, http.StatusServiceUnavailable, "", "forward to leader %s: %v", addr, err)
		}
		r.Header.Set(ForwardedHeader, rt.o.Name)
		m.ForwardedRequests.WithLabelValues("ok").Inc()
		proxy.ServeHTTP(w, r)
	}
}

// fresh wraps a read: it sets the freshness headers, and with
// ?stale=false serves the read on the leader (forwarding it there).
func (rt *Router) fresh(h http.HandlerFunc) http.HandlerFunc {
	c := rt.o.Cluster
	leaderRead := rt.onLeader(func(w http.ResponseWriter, r *http.Request) {
		if err := c.VerifyLeader(); err != nil {
			writeError(w, http.StatusServiceUnavailable, "", "not the leader any more (%v); try again", err)
			return
		}
		c.SetFreshness(w.Header())
		h(w, r)
	})
	return func(w http.ResponseWriter, r *http.Request) {
		if v := r.URL.Query().Get("stale"); v != "" {
			staleOK, err := strconv.ParseBool(v)
			if err != nil {
				writeError(w, http.StatusBadRequest, "stale", "stale %q is not true or false", v)
				return
			}
			if !staleOK {
				leaderRead(w, r)
				return
			}
		}
		c.SetFreshness(w.Header())
		h(w, r)
	}
}
