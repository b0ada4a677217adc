package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
)

// maxBody bounds every request body.
const maxBody = 1 << 20

const forwardedHeader = "X-Herd-Forwarded-By"

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	// handle serves a request on this server; a token with role need is
	// required (when auth is on), path parameters are checked, and writes
	// (need ≥ operate) are rate-limited per client.
	handle := func(pattern string, need config.Role, h http.Handler) {
		route := pattern
		if _, p, ok := strings.Cut(pattern, " "); ok {
			route = p
		}
		h = checkPathParams(h)
		if need >= config.RoleOperate {
			h = s.limitWrites(h)
		}
		mux.Handle(pattern, s.instrument(route, s.authorize(need, h)))
	}
	read := func(pattern string, h http.HandlerFunc) { handle(pattern, config.RoleRead, s.fresh(h)) }
	// onLeader forwards to the leader after this server checked the
	// token; the leader checks it again.
	write := func(pattern string, need config.Role, h http.HandlerFunc) {
		handle(pattern, need, s.onLeader(s.idempotent(h)))
	}

	// Agents renew their leases every few seconds: checked like writes but
	// not counted against people's write rate.
	lease := func(pattern string, h http.HandlerFunc) {
		_, route, _ := strings.Cut(pattern, " ")
		mux.Handle(pattern, s.instrument(route, s.authorize(config.RoleOperate, checkPathParams(s.onLeader(h)))))
	}
	lease("PUT /v1/hosts/{host}/lease", s.handleLeaseRenew)
	lease("DELETE /v1/hosts/{host}/lease", s.handleLeaseRelease)
	lease("POST /v1/hosts/{host}/heartbeat", s.handleHeartbeat)
	// Served everywhere, so that a server not in dev mode says why not.
	write("POST /v1/dev/hosts/{host}/crash", config.RoleOperate, s.handleDevCrash(true))
	write("POST /v1/dev/hosts/{host}/restore", config.RoleOperate, s.handleDevCrash(false))
	read("GET /v1/hosts", s.handleHosts)
	read("GET /v1/hosts/{host}", s.handleHost)
	write("PUT /v1/hosts/{host}/status", config.RoleOperate, s.handleHostStatus)
	write("PUT /v1/hosts/{host}/maintenance", config.RoleOperate, s.handleMaintenance)
	// A precheck changes nothing: readers may ask.
	write("POST /v1/hosts/{host}/maintenance/precheck", config.RoleRead, s.handlePrecheck)
	read("GET /v1/hosts/{host}/maintenance/exit-precheck", s.handleExitPrecheck)
	write("POST /v1/vms/{vm}/migrate", config.RoleOperate, s.handleMigrateVM)
	read("GET /v1/operations", s.handleOperations)
	read("GET /v1/operations/{id}", s.handleOperation)
	write("POST /v1/operations/{id}/cancel", config.RoleOperate, s.handleCancelOperation)
	write("POST /v1/operations/{id}/retry", config.RoleOperate, s.handleRetryOperation)
	s.addRolloutRoutes(read, write)
	read("GET /v1/vms", s.handleVMs)
	read("GET /v1/events", s.handleEvents)
	write("POST /v1/events", config.RoleOperate, s.handleAppendEvent)
	write("POST /v1/alerts/webhook", config.RoleOperate, s.handleAlertWebhook)
	write("GET /v1/balance/plan", config.RoleRead, s.handleBalancePlan)
	write("POST /v1/balance/apply", config.RoleOperate, s.handleBalanceApply)
	write("POST /v1/simulate/failure", config.RoleRead, s.handleSimulateFailure)
	read("GET /v1/policy", s.handleGetPolicy)
	write("PUT /v1/policy", config.RoleAdmin, s.handlePutPolicy)
	read("POST /v1/policy/validate", s.handleValidatePolicy)
	read("GET /v1/cluster", s.handleCluster)
	// Read by the leader's autopilot and by followers checking readiness:
	// no freshness check of its own.
	handle("GET /v1/cluster/self", config.RoleRead, http.HandlerFunc(s.handleServerStats))
	write("POST /v1/cluster/join", config.RoleAdmin, s.handleJoin)
	write("POST /v1/cluster/remove", config.RoleAdmin, s.handleRemoveServer)
	// Leaving runs on the server that leaves; it asks the leader.
	handle("POST /v1/cluster/leave", config.RoleAdmin, http.HandlerFunc(s.handleLeave))
	handle("GET /healthz", config.RoleNone, http.HandlerFunc(s.handleHealthz))
	handle("GET /readyz", config.RoleNone, http.HandlerFunc(s.handleReadyz))
	metricsRole := config.RoleRead
	if s.cfg.API.MetricsOpen {
		metricsRole = config.RoleNone
	}
	mux.Handle("GET /metrics", s.authorize(metricsRole, s.metrics.Handler(s.reg)))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "", "no such endpoint: %s %s", r.Method, r.URL.Path)
	})
	return mux
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

func (s *Server) instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h.ServeHTTP(rec, r)
		s.metrics.APIRequests.WithLabelValues(route, r.Method, strconv.Itoa(rec.code)).Inc()
		s.metrics.APIRequestDuration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// onLeader runs a write on the leader: a follower forwards the request to
// the leader's API, so a 2xx from any server means committed.
func (s *Server) onLeader(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.node.IsLeader() {
			h(w, r)
			return
		}
		if r.Header.Get(forwardedHeader) != "" {
			// Forwarded to us, but we lost leadership meanwhile: no loops.
			s.metrics.ForwardedRequests.WithLabelValues("no_leader").Inc()
			writeError(w, http.StatusServiceUnavailable, "", "leadership changed; try again")
			return
		}
		addr := s.leaderAPI()
		if addr == "" {
			s.metrics.ForwardedRequests.WithLabelValues("no_leader").Inc()
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
		proxy.Transport = s.clientTransport()
		proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
			s.metrics.ForwardedRequests.WithLabelValues("error").Inc()
			writeError(w, http.StatusServiceUnavailable, "", "forward to leader %s: %v", addr, err)
		}
		r.Header.Set(forwardedHeader, s.cfg.NodeName)
		s.metrics.ForwardedRequests.WithLabelValues("ok").Inc()
		proxy.ServeHTTP(w, r)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, field, format string, args ...any) {
	writeJSON(w, code, api.Error{Error: fmt.Sprintf(format, args...), Field: field})
}

// writeApplyError answers for a failed raft write.
func writeApplyError(w http.ResponseWriter, err error) {
	var ae *cluster.ApplyError
	switch {
	case errors.As(err, &ae):
		writeJSON(w, ae.Code, api.Error{Error: ae.Msg, Field: ae.Field})
	case errors.Is(err, cluster.ErrNotLeader):
		writeError(w, http.StatusServiceUnavailable, "", "%v", err)
	default:
		writeError(w, http.StatusServiceUnavailable, "", "not committed: %v", err)
	}
}

// decodeBody reads a strict JSON body: unknown fields and trailing data are
// errors that name the field.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "", "content type %q: want application/json", ct)
		return false
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
			writeError(w, http.StatusRequestEntityTooLarge, "", "body larger than %d bytes", mbe.Limit)
			return false
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field = strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			err = fmt.Errorf("unknown field %q", field)
		case errors.Is(err, io.EOF):
			err = errors.New("empty body: a JSON object is required")
		}
		writeError(w, http.StatusBadRequest, field, "bad request body: %v", err)
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "", "bad request body: data after the JSON object")
		return false
	}
	if field, problem := checkStrings(v); problem != "" {
		writeError(w, http.StatusBadRequest, field, "%s: %s", field, problem)
		return false
	}
	return true
}

func (s *Server) handleHosts(w http.ResponseWriter, r *http.Request) {
	doc, now := s.Policy(), time.Now()
	out := api.Hosts{Hosts: []api.Host{}}
	// Under the read lock, without copying the state: hosts are
	// immutable values, and the VMs' usage is computed once per entry.
	s.node.FSM().ReadWithUsage(func(st *cluster.State, u *cluster.Usage) {
		l := newListingWithUsage(doc, st, u.Hosts, now)
		out.Hosts = make([]api.Host, 0, len(st.Hosts))
		for _, name := range st.HostNames() {
			out.Hosts = append(out.Hosts, l.host(st.Hosts[name], false))
		}
	})
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleHost(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("host")
	st := s.node.FSM().State()
	h, ok := st.Hosts[name]
	if !ok {
		writeError(w, http.StatusNotFound, "host", "host %q not found", name)
		return
	}
	writeJSON(w, http.StatusOK, newListing(s.Policy(), st, time.Now()).host(h, true))
}

func (s *Server) handleVMs(w http.ResponseWriter, r *http.Request) {
	host := r.URL.Query().Get("host")
	st := s.node.FSM().State()
	if host != "" {
		if _, ok := st.Hosts[host]; !ok {
			writeError(w, http.StatusNotFound, "host", "host %q not found", host)
			return
		}
	}
	out := api.VMs{VMs: []api.VMView{}}
	vms := st.SortedVMs()
	if host != "" {
		vms = st.VMsOn(host)
	}
	comp := s.compiled(s.Policy(), st)
	for _, vm := range vms {
		out.VMs = append(out.VMs, vmView(comp, vm))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := cluster.EventFilter{Host: q.Get("host"), VM: q.Get("vm"), Operation: q.Get("operation")}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since", "since %q is not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", v)
			return
		}
		f.Since = t
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit", "limit %q is not a positive number", v)
			return
		}
		f.Limit = n
	}
	var events []cluster.Event
	var ferr *fieldErr
	s.node.FSM().Read(func(st *cluster.State) {
		if f.VM, ferr = eventVM(st, f.VM); ferr == nil {
			events = st.QueryEvents(f)
		}
	})
	if ferr != nil {
		ferr.write(w)
		return
	}
	if events == nil {
		events = []cluster.Event{}
	}
	writeJSON(w, http.StatusOK, api.Events{Events: events})
}

func (s *Server) handleCluster(w http.ResponseWriter, r *http.Request) {
	st := s.node.FSM().State()
	leader, _ := s.node.Leader()
	out := api.Cluster{Self: s.selfInfo(), Leader: leader, LeaderAPI: s.leaderAPI(), Index: st.Index,
		Hosts: len(st.Hosts), VMs: len(st.VMs), Discovered: s.discoveredList(), Servers: []api.Server{}, Policy: s.policyStatus(), Gossip: s.gossipMembers()}
	members, _ := s.node.Members()
	health := s.members.health()
	for _, m := range members {
		sv := api.Server{ID: m.ID, RaftAddr: m.Address, Voter: m.Voter, Leader: m.ID == leader, Health: health[m.ID]}
		if reg := st.Servers[m.ID]; reg != nil {
			sv.APIAddr = reg.APIAddr
		}
		out.Servers = append(out.Servers, sv)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req api.JoinRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if !config.ValidNodeName(req.ID) {
		writeError(w, http.StatusBadRequest, "id", "%q is not a valid node name", req.ID)
		return
	}
	if _, _, err := net.SplitHostPort(req.RaftAddr); err != nil {
		writeError(w, http.StatusBadRequest, "raft_addr", "%q is not host:port", req.RaftAddr)
		return
	}
	if _, err := config.NormalizeAPIAddr(req.APIAddr); err != nil {
		writeError(w, http.StatusBadRequest, "api_addr", "%v", err)
		return
	}
	plan, ferr := s.planJoin(req)
	if ferr != nil {
		ferr.write(w)
		return
	}
	// The registration first: a configuration change that then fails
	// leaves only a registration no member uses, never a member the
	// answer did not admit to.
	if _, err := s.node.Apply(r.Context(), &cluster.RegisterServer{Server: cluster.Server{ID: req.ID, RaftAddr: req.RaftAddr, APIAddr: req.APIAddr}}); err != nil {
		writeApplyError(w, err)
		return
	}
	voter, ferr := s.applyJoin(req, plan)
	if ferr != nil {
		ferr.write(w)
		return
	}
	msg := "joined as a non-voter: promoted to voter once caught up and healthy for " + s.cfg.Raft.ServerStabilization.String()
	if voter {
		msg = "a voter already"
	}
	s.log.Info("server joined", "id", req.ID, "raft", req.RaftAddr, "api", req.APIAddr, "voter", voter)
	writeJSON(w, http.StatusOK, api.JoinResult{ID: req.ID, Voter: voter, Message: msg})
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.Health{Status: "ok", Time: time.Now().UTC()})
}

// handleReadyz: ready when a leader is known, this server is in touch with
// it, and it has applied the leader's commit index as the leader reported
// it (a restarted server first replays its log).
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	s.setFreshness(w)
	if stale := w.Header().Get(headerStale); stale != "" {
		writeJSON(w, http.StatusServiceUnavailable, api.Health{Status: "not ready", Reason: stale, Time: time.Now().UTC()})
		return
	}
	writeJSON(w, http.StatusOK, api.Health{Status: "ready", Time: time.Now().UTC()})
}

// actor names who asked for a change: the token's name, or without auth
// (dev mode) the remote address.
func actor(r *http.Request) string {
	if p, ok := principalOf(r); ok {
		return "token:" + p.Name
	}
	if by := r.Header.Get(forwardedHeader); by != "" {
		return "api:" + r.Header.Get("X-Forwarded-For") + " via " + by
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	return "api:" + host
}

func (s *Server) handleHostStatus(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("host")
	var req api.StatusRequest
	if !decodeBody(w, r, &req) {
		return
	}
	status := cluster.AdminStatus(req.Status)
	if !status.Valid() {
		writeError(w, http.StatusBadRequest, "status", "status %q is not one of AVAILABLE, NOT_ACCEPTING, MAINTENANCE, OFFLINE", req.Status)
		return
	}
	if req.ConfirmFenced && status != cluster.Offline {
		writeError(w, http.StatusBadRequest, "confirm_fenced", "confirm_fenced goes with status OFFLINE only")
		return
	}
	if len(req.Reason) > 1024 {
		writeError(w, http.StatusBadRequest, "reason", "reason is longer than 1024 bytes")
		return
	}
	st := s.node.FSM().State()
	h, ok := st.Hosts[name]
	if !ok {
		writeError(w, http.StatusNotFound, "host", "host %q not found", name)
		return
	}
	if status == cluster.InMaintenance && !req.ConfirmFenced {
		// The same as enabling maintenance without moving anything.
		s.enableMaintenance(w, r, name, api.MaintenanceRequest{Status: "enable", Migrate: "none"})
		return
	}
	if req.ConfirmFenced && h.Health == cluster.HealthAlive {
		writeError(w, http.StatusConflict, "confirm_fenced", "host %s is alive (%s): Herd still hears from it, so it is not fenced; power it off or isolate it first", name, h.Connection)
		return
	}
	if h.Maintenance != cluster.MaintenanceOff && !req.ConfirmFenced {
		writeError(w, http.StatusConflict, "status", "host %s maintenance is %s: use PUT /v1/hosts/%s/maintenance to enter or leave maintenance", name, h.Maintenance, name)
		return
	}
	who := actor(r)
	msg := fmt.Sprintf("admin status %s → %s%s", h.Admin, status, reasonSuffix(req.Reason))
	if req.ConfirmFenced {
		msg += "; operator confirmed the host is fenced"
		s.metrics.FencingAttempts.WithLabelValues(name, cluster.FenceOperator, "success").Inc()
	}
	if _, err := s.node.Apply(r.Context(), &cluster.SetHostStatus{Host: name, Status: status, Reason: req.Reason,
		ConfirmFenced: req.ConfirmFenced, Event: cluster.NewEvent("host.status", who, name, "", msg)}); err != nil {
		writeApplyError(w, err)
		return
	}
	st = s.node.FSM().State()
	writeJSON(w, http.StatusOK, api.NewHost(st.Hosts[name], st.Usage()[name], len(st.StaleOn(name))))
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return ": " + r
}

// handleDevCrash makes a simulator host stop answering or answer again
// (herd host crash|restore, dev mode only).
func (s *Server) handleDevCrash(crash bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("host")
		if s.devCrash == nil {
			writeError(w, http.StatusConflict, "", "dev mode only: crash and restore act on herd server -dev's simulated hosts; this server drives real ones")
			return
		}
		var h *cluster.Host
		s.node.FSM().Read(func(st *cluster.State) { h = st.Hosts[name] })
		if h == nil {
			writeError(w, http.StatusNotFound, "host", "host %q not found", name)
			return
		}
		if err := s.devCrash(name, crash); err != nil {
			writeError(w, http.StatusInternalServerError, "", "%v", err)
			return
		}
		what := "restored: it answers again"
		if crash {
			what = "crashed: it stops answering"
		}
		msg := fmt.Sprintf("dev: simulator host %s %s", name, what)
		if _, err := s.node.Apply(r.Context(), &cluster.AppendEvents{Events: []cluster.Event{cluster.NewEvent("dev.host", actor(r), name, "", msg)}}); err != nil {
			writeApplyError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// eventVM resolves the vm of an events query: an id, or the name of one
// VM. A name no VM has now is taken as an id (the log outlives VMs).
func eventVM(st *cluster.State, ref string) (string, *fieldErr) {
	if ref == "" || st.VMs[ref] != nil {
		return ref, nil
	}
	vm, ferr := findVMByRef(st, ref)
	switch {
	case ferr == nil:
		return vm.ID, nil
	case ferr.code == http.StatusNotFound:
		return ref, nil
	}
	return "", ferr
}
