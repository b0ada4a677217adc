package daemon

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/daemon/httpapi"
)

func (s *Server) handleHosts(w http.ResponseWriter, r *http.Request) (any, error) {
	doc, now := s.Policy(), time.Now()
	out := api.Hosts{Hosts: []api.Host{}}
	// Under the read lock, without copying the state: hosts are
	// immutable values, and the FSM keeps the VMs' usage as entries change
	// them.
	s.node.FSM().ReadWithUsage(func(st *cluster.State, u *cluster.Usage) {
		l := newListingWithUsage(doc, st, u.Hosts, now)
		out.Hosts = make([]api.Host, 0, len(st.Hosts))
		for _, name := range st.HostNames() {
			out.Hosts = append(out.Hosts, l.host(st.Hosts[name], false))
		}
	})
	return out, nil
}

func (s *Server) handleHost(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("host")
	doc, now := s.Policy(), time.Now()
	var out *api.Host
	// As handleHosts: no copy of the state, no pass over every VM.
	s.node.FSM().ReadWithUsage(func(st *cluster.State, u *cluster.Usage) {
		if h, ok := st.Hosts[name]; ok {
			v := newListingWithUsage(doc, st, u.Hosts, now).host(h, true)
			out = &v
		}
	})
	if out == nil {
		return nil, httpapi.Errorf(http.StatusNotFound, "host", "host %q not found", name)
	}
	return out, nil
}

func (s *Server) handleVMs(w http.ResponseWriter, r *http.Request) (any, error) {
	host := r.URL.Query().Get("host")
	st := s.node.FSM().State()
	if host != "" {
		if _, ok := st.Hosts[host]; !ok {
			return nil, httpapi.Errorf(http.StatusNotFound, "host", "host %q not found", host)
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
	return out, nil
}

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) (any, error) {
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
	s.node.FSM().Read(func(st *cluster.State) {
		if f.VM, ferr = eventVM(st, f.VM); ferr == nil {
			events = st.QueryEvents(f)
		}
	})
	if ferr != nil {
		return nil, ferr
	}
	if events == nil {
		events = []cluster.Event{}
	}
	return api.Events{Events: events}, nil
}

func (s *Server) handleCluster(w http.ResponseWriter, r *http.Request) (any, error) {
	st := s.node.FSM().State()
	leader, _ := s.node.Leader()
	out := api.Cluster{Self: s.selfInfo(), Leader: leader, LeaderAPI: s.leaderAPI(), Index: st.Index,
		Hosts: len(st.Hosts), VMs: len(st.VMs), Discovered: s.discoveredList(), Servers: []api.Server{}, Policy: s.policyStatus(), Gossip: s.gossip.Members()}
	members, _ := s.node.Members()
	health := s.members.Health()
	for _, m := range members {
		sv := api.Server{ID: m.ID, RaftAddr: m.Address, Voter: m.Voter, Leader: m.ID == leader, Health: health[m.ID]}
		if reg := st.Servers[m.ID]; reg != nil {
			sv.APIAddr = reg.APIAddr
		}
		out.Servers = append(out.Servers, sv)
	}
	return out, nil
}

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) (any, error) {
	var req api.JoinRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	if !config.ValidNodeName(req.ID) {
		return nil, httpapi.Errorf(http.StatusBadRequest, "id", "%q is not a valid node name", req.ID)
	}
	if _, _, err := net.SplitHostPort(req.RaftAddr); err != nil {
		return nil, httpapi.Errorf(http.StatusBadRequest, "raft_addr", "%q is not host:port", req.RaftAddr)
	}
	if _, err := config.NormalizeAPIAddr(req.APIAddr); err != nil {
		return nil, httpapi.Errorf(http.StatusBadRequest, "api_addr", "%v", err)
	}
	plan, err := s.members.PlanJoin(req)
	if err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	// The registration first: a configuration change that then fails
	// leaves only a registration no member uses, never a member the
	// answer did not admit to.
	if _, err := s.node.Apply(r.Context(), &cluster.RegisterServer{Server: cluster.Server{ID: req.ID, RaftAddr: req.RaftAddr, APIAddr: req.APIAddr}}); err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	voter, err := s.members.ApplyJoin(req, plan)
	if err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	msg := "joined as a non-voter: promoted to voter once caught up and healthy for " + s.cfg.Raft.ServerStabilization.String()
	if voter {
		msg = "a voter already"
	}
	s.log.Info("server joined", "id", req.ID, "raft", req.RaftAddr, "api", req.APIAddr, "voter", voter)
	return api.JoinResult{ID: req.ID, Voter: voter, Message: msg}, nil
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) (any, error) {
	return api.Health{Status: "ok", Time: time.Now().UTC()}, nil
}

// handleReadyz: ready when a leader is known, this server is in touch with
// it, and it has applied the leader's commit index as the leader reported
// it (a restarted server first replays its log).
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) (any, error) {
	s.setFreshness(w.Header())
	if stale := w.Header().Get(headerStale); stale != "" {
		return httpapi.Reply{Code: http.StatusServiceUnavailable, Body: api.Health{Status: "not ready", Reason: stale, Time: time.Now().UTC()}}, nil
	}
	return api.Health{Status: "ready", Time: time.Now().UTC()}, nil
}

func (s *Server) handleHostStatus(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("host")
	var req api.StatusRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	status := cluster.AdminStatus(req.Status)
	if !status.Valid() {
		return nil, httpapi.Errorf(http.StatusBadRequest, "status", "status %q is not one of AVAILABLE, NOT_ACCEPTING, MAINTENANCE, OFFLINE", req.Status)
	}
	if req.ConfirmFenced && status != cluster.Offline {
		return nil, httpapi.Errorf(http.StatusBadRequest, "confirm_fenced", "confirm_fenced goes with status OFFLINE only")
	}
	if len(req.Reason) > 1024 {
		return nil, httpapi.Errorf(http.StatusBadRequest, "reason", "reason is longer than 1024 bytes")
	}
	st := s.node.FSM().State()
	h, ok := st.Hosts[name]
	if !ok {
		return nil, httpapi.Errorf(http.StatusNotFound, "host", "host %q not found", name)
	}
	if status == cluster.InMaintenance && !req.ConfirmFenced {
		// The same as enabling maintenance without moving anything.
		return s.enableMaintenance(r, name, api.MaintenanceRequest{Status: "enable", Migrate: "none"})
	}
	if req.ConfirmFenced && h.Health == cluster.HealthAlive {
		return nil, httpapi.Errorf(http.StatusConflict, "confirm_fenced", "host %s is alive (%s): Herd still hears from it, so it is not fenced; power it off or isolate it first", name, h.Connection)
	}
	if h.Maintenance != cluster.MaintenanceOff && !req.ConfirmFenced {
		return nil, httpapi.Errorf(http.StatusConflict, "status", "host %s maintenance is %s: use PUT /v1/hosts/%s/maintenance to enter or leave maintenance", name, h.Maintenance, name)
	}
	who := httpapi.Actor(r)
	msg := fmt.Sprintf("admin status %s → %s%s", h.Admin, status, reasonSuffix(req.Reason))
	if req.ConfirmFenced {
		msg += "; operator confirmed the host is fenced"
		s.metrics.FencingAttempts.WithLabelValues(name, cluster.FenceOperator, "success").Inc()
	}
	if _, err := s.node.Apply(r.Context(), &cluster.SetHostStatus{Host: name, Status: status, Reason: req.Reason,
		ConfirmFenced: req.ConfirmFenced, Event: cluster.NewEvent("host.status", who, name, "", msg)}); err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	st = s.node.FSM().State()
	return api.NewHost(st.Hosts[name], st.Usage()[name], len(st.StaleOn(name))), nil
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return ": " + r
}

// handleDevCrash makes a simulator host stop answering or answer again
// (herd host crash|restore, dev mode only).
func (s *Server) handleDevCrash(crash bool) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		name := r.PathValue("host")
		if s.devCrash == nil {
			return nil, httpapi.Errorf(http.StatusConflict, "", "dev mode only: crash and restore act on herd server -dev's simulated hosts; this server drives real ones")
		}
		var h *cluster.Host
		s.node.FSM().Read(func(st *cluster.State) { h = st.Hosts[name] })
		if h == nil {
			return nil, httpapi.Errorf(http.StatusNotFound, "host", "host %q not found", name)
		}
		if err := s.devCrash(name, crash); err != nil {
			return nil, httpapi.Errorf(http.StatusInternalServerError, "", "%v", err)
		}
		what := "restored: it answers again"
		if crash {
			what = "crashed: it stops answering"
		}
		msg := fmt.Sprintf("dev: simulator host %s %s", name, what)
		if _, err := s.node.Apply(r.Context(), &cluster.AppendEvents{Events: []cluster.Event{cluster.NewEvent("dev.host", httpapi.Actor(r), name, "", msg)}}); err != nil {
			return nil, httpapi.ApplyFailed(err)
		}
		return httpapi.NoContent, nil
	}
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
