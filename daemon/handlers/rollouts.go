package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/daemon/controller/balance"
	"github.com/herd-project/herd/daemon/controller/rollout"
	"github.com/herd-project/herd/daemon/httpapi"
	"github.com/herd-project/herd/metrics"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/plan"
)

// newRolloutController builds the leader's rollout controller and its metrics.
func newRolloutController(s *Server) *rollout.Controller {
	m := metrics.NewRollout(s.reg, s.rolloutSample)
	return rollout.New(rollout.Deps{
		State:        func() *cluster.State { return s.node.FSM().State() },
		Policy:       s.Policy,
		Apply:        rolloutApplier{s},
		Maintenance:  rolloutMaintenance{s},
		Hooks:        rollout.ExecRunner{},
		Gate:         windowGate{s},
		Clock:        &s.clock,
		Observer:     rolloutObserver{m},
		APIAddr:      s.apiAddr,
		AgentStarted: s.leases.AgentStarted,
		Log:          s.log.With("controller", "rollout"),
	})
}

type rolloutApplier struct{ s *Server }

func (a rolloutApplier) Apply(ctx context.Context, cmd cluster.Command) error {
	_, err := a.s.node.Apply(ctx, cmd)
	return err
}

type rolloutObserver struct{ m *metrics.Rollout }

func (o rolloutObserver) PhaseEnded(p cluster.RolloutPhase, seconds float64) {
	o.m.StepDuration.WithLabelValues(string(p)).Observe(seconds)
}

func (o rolloutObserver) HookEnded(result string) { o.m.HookRuns.WithLabelValues(result).Inc() }

// rolloutMaintenance enters and leaves maintenance for the rollout
// controller through the same functions as the API.
type rolloutMaintenance struct{ s *Server }

func (m rolloutMaintenance) CanEnter(st *cluster.State, host, migrate string, force bool) (string, error) {
	er, ferr := evacuationRequest(st, host, api.MaintenanceRequest{Status: "enable", Migrate: migrate})
	if ferr != nil {
		return "", ferr
	}
	if pc := m.s.precheck(st, er); !pc.OK() {
		var reasons []string
		for _, b := range toAPIBlockers(pc.Blockers) {
			if b.VM != "" {
				reasons = append(reasons, b.VM+": "+b.Reason)
			} else {
				reasons = append(reasons, b.Reason)
			}
		}
		return "", errors.New(strings.Join(reasons, "; "))
	}
	if b := m.s.failoverBlocker(st, host); b != "" && !force {
		return b, nil
	}
	return "", nil
}

func (m rolloutMaintenance) Enter(ctx context.Context, host, migrate string, force bool, id, why string) error {
	_, err := m.s.enterMaintenance(ctx, host, api.MaintenanceRequest{Status: "enable", Migrate: migrate, Force: force}, "rollout", id, why)
	return err
}

func (m rolloutMaintenance) Exit(ctx context.Context, host string, moveBack bool, id string) error {
	req := api.MaintenanceRequest{Status: "disable"}
	if moveBack {
		left := leftVMs(m.s.node.FSM().State(), host)
		for _, l := range left.LiveMigratedVMs {
			if l.PowerState == string(cluster.PoweredOn) {
				req.LiveMigrateBackVMs = append(req.LiveMigrateBackVMs, l.VM)
			}
		}
		for _, l := range left.OfflineMigratedVMs {
			if l.PowerState == string(cluster.PoweredOff) {
				req.OfflineMigrateBackVMs = append(req.OfflineMigrateBackVMs, l.VM)
			}
		}
	}
	_, err := m.s.exitMaintenance(ctx, host, req, "rollout", id)
	return err
}

// windowGate holds host steps to the rollout's maintenance window.
type windowGate struct{ s *Server }

func (g windowGate) MayStart(r *cluster.Rollout, host string, now time.Time) (bool, string) {
	if r.Window == "" {
		return true, ""
	}
	w := balance.WindowState(g.s.Policy(), r.Window, now)
	if w == nil {
		return false, fmt.Sprintf("window %s is not in the policy (windows)", r.Window)
	}
	if w.Open {
		return true, ""
	}
	return false, fmt.Sprintf("window %s is closed: the next host step starts when it opens at %s", r.Window, w.Opens.Format(time.RFC3339))
}

// rolloutSample counts the rollouts for the metrics.
func (s *Server) rolloutSample() metrics.RolloutSample {
	out := metrics.RolloutSample{Hosts: map[string]int{}, Rollouts: map[string]int{}}
	now := s.clock.Now()
	s.node.FSM().Read(func(st *cluster.State) {
		for _, r := range st.Rollouts {
			out.Rollouts[string(r.State)]++
			if r.State.Terminal() {
				continue
			}
			for _, h := range r.Hosts {
				out.Hosts[string(h.Phase)]++
			}
			if r.State == cluster.RolloutRunning {
				out.SinceProgress = max(out.SinceProgress, now.Sub(r.Updated).Seconds())
			}
		}
	})
	return out
}

// addRolloutRoutes serves /v1/rollouts.
func (s *Server) addRolloutRoutes(rt *httpapi.Router) {
	write := rt.OnLeader
	read := func(pattern string, h httpapi.HandlerFunc) { rt.Local(pattern, config.RoleRead, h) }
	// A plan changes nothing: readers may ask (on the leader, which holds
	// the ledger of moves in flight).
	write("POST /v1/rollouts/plan", config.RoleRead, s.handleRolloutPlan)
	write("POST /v1/rollouts", config.RoleOperate, s.handleRolloutStart)
	read("GET /v1/rollouts", s.handleRollouts)
	read("GET /v1/rollouts/{id}", s.handleRollout)
	for _, action := range []string{cluster.RolloutPause, cluster.RolloutResume, cluster.RolloutCancel} {
		write("POST /v1/rollouts/{id}/"+action, config.RoleOperate, s.handleRolloutControl(action))
	}
	write("POST /v1/rollouts/{id}/continue", config.RoleOperate, s.handleRolloutContinue)
	write("POST /v1/dev/hosts/{host}/reboot", config.RoleOperate, s.handleDevReboot)
}

// rolloutHosts resolves which hosts a request names, in the order given.
func rolloutHosts(st *cluster.State, doc *policy.Document, comp *policy.Compiled, req api.RolloutRequest) ([]string, *httpapi.Error) {
	n := 0
	for _, set := range []bool{len(req.Hosts) > 0, req.Group != "", req.All} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, httpapi.BadField("hosts", "name the hosts with exactly one of hosts, group and all")
	}
	switch {
	case req.All:
		return st.HostNames(), nil
	case req.Group != "":
		var out []string
		known := slices.ContainsFunc(doc.HostGroups, func(g policy.HostGroup) bool { return g.Name == req.Group })
		for _, name := range st.HostNames() {
			h := st.Hosts[name]
			if known && comp != nil && comp.InHostGroup(h, req.Group) || !known && h.Group == req.Group {
				out = append(out, name)
			}
		}
		if len(out) == 0 {
			return nil, &httpapi.Error{Code: http.StatusNotFound, Field: "group", Msg: fmt.Sprintf("group %q has no hosts (a policy host group, or a driver's group)", req.Group)}
		}
		return out, nil
	}
	seen := map[string]bool{}
	for i, h := range req.Hosts {
		if st.Hosts[h] == nil {
			return nil, &httpapi.Error{Code: http.StatusNotFound, Field: "hosts", Msg: fmt.Sprintf("hosts[%d]: host %q not found", i, h)}
		}
		if seen[h] {
			return nil, httpapi.BadField("hosts", "hosts[%d]: host %s is listed twice", i, h)
		}
		seen[h] = true
	}
	return req.Hosts, nil
}

// rolloutRequest checks a plan or start body, defaults applied, and
// returns the planner's request.
func (s *Server) rolloutRequest(st *cluster.State, req *api.RolloutRequest) (plan.RolloutRequest, *httpapi.Error) {
	doc := s.Policy()
	if req.Parallel == 0 {
		req.Parallel = 1
	}
	if req.Order == "" {
		req.Order = plan.OrderFewestVMs
	}
	if req.Migrate == "" {
		req.Migrate = string(policy.MigrateAll)
	}
	if req.OnFailure == "" {
		req.OnFailure = cluster.OnFailureStop
	}
	switch {
	case req.Parallel < 1 || req.Parallel > 64:
		return plan.RolloutRequest{}, httpapi.BadField("parallel", "parallel must be 1 to 64, got %d", req.Parallel)
	case !slices.Contains(plan.RolloutOrders, req.Order):
		return plan.RolloutRequest{}, httpapi.BadField("order", "order %q is not one of %s", req.Order, strings.Join(plan.RolloutOrders, ", "))
	case req.Migrate != string(policy.MigrateAll) && req.Migrate != string(policy.MigrateActiveOnly):
		return plan.RolloutRequest{}, httpapi.BadField("migrate", "migrate %q is not one of all, active-only (a rollout empties each host)", req.Migrate)
	case req.OnFailure != cluster.OnFailureStop && req.OnFailure != cluster.OnFailureSkip:
		return plan.RolloutRequest{}, httpapi.BadField("on_failure", "on_failure %q is not one of stop, skip", req.OnFailure)
	case req.Hook != "" && doc.Rollout.Hook(req.Hook) == nil:
		known := "none: add them under rollout.hooks in the policy"
		if names := doc.Rollout.HookNames(); len(names) > 0 {
			known = strings.Join(names, ", ")
		}
		return plan.RolloutRequest{}, httpapi.BadField("hook", "hook %q is not in the policy's rollout.hooks (known: %s); a rollout runs only hooks the policy names", req.Hook, known)
	}
	if req.Window != "" {
		if _, err := doc.Window(req.Window); err != nil {
			return plan.RolloutRequest{}, httpapi.BadField("window", "%v", err)
		}
	}
	comp := s.compiled(doc, st)
	hosts, ferr := rolloutHosts(st, doc, comp, *req)
	if ferr != nil {
		return plan.RolloutRequest{}, ferr
	}
	pr := plan.RolloutRequest{Hosts: hosts, Parallel: req.Parallel, Order: req.Order, Migrate: policy.MigrateMode(req.Migrate),
		MinHostFailures: doc.Failover.MinHostFailures, History: migrationHistory(st),
		Limits: policy.Limits{PerSource: doc.Maintenance.PerSource, PerTarget: doc.Maintenance.PerTarget, Cluster: doc.Maintenance.Cluster}}
	return pr, nil
}

// migrationHistory sums the migrations the state remembers (the steps of
// the operations it keeps), so that every server estimates alike.
func migrationHistory(st *cluster.State) plan.MigrationHistory {
	var h plan.MigrationHistory
	for _, op := range st.Operations {
		for _, it := range op.Items {
			if it.State == cluster.ItemDone && (it.Action == cluster.ActionLiveMigrate || it.Action == cluster.ActionOfflineMigrate) &&
				!it.Started.IsZero() && it.Finished.After(it.Started) {
				h.Count++
				h.Seconds += it.Finished.Sub(it.Started).Seconds()
			}
		}
	}
	return h
}

func (s *Server) planRollout(st *cluster.State, pr plan.RolloutRequest) plan.RolloutPlan {
	o := s.placementOptions(s.Policy(), st, 0)
	p := plan.Rollout(st, pr, o)
	// A host in another rollout is not this one's to take.
	for i := range p.Hosts {
		if r := st.ActiveRolloutOn(p.Hosts[i].Host); r != nil {
			p.Hosts[i].Blockers = append(p.Hosts[i].Blockers, "in rollout "+r.ID+", which has not ended")
		}
	}
	return p
}

func toAPIPlan(p plan.RolloutPlan) api.RolloutPlan {
	out := api.RolloutPlan{Parallel: p.Parallel, ParallelNote: p.ParallelNote, FailoverCapacity: p.FailoverCapacity, Blockers: p.Blockers,
		MigrationSeconds: p.MigrationSeconds, FromHistory: p.FromHistory, EstimatedSeconds: p.EstimatedSeconds, OK: p.OK(),
		Waves: make([]api.RolloutWave, 0, len(p.Waves)), Hosts: make([]api.RolloutPlanHost, 0, len(p.Hosts))}
	for _, w := range p.Waves {
		aw := api.RolloutWave{Number: w.Number, Hosts: w.Hosts, EstimatedSeconds: w.EstimatedSeconds, Ledger: make([]api.LedgerEntry, 0, len(w.Ledger))}
		for _, e := range w.Ledger {
			aw.Ledger = append(aw.Ledger, api.LedgerEntry(e))
		}
		out.Waves = append(out.Waves, aw)
	}
	for _, h := range p.Hosts {
		ah := api.RolloutPlanHost{Host: h.Host, Wave: h.Wave, Blockers: h.Blockers, EstimatedSeconds: h.EstimatedSeconds, VMs: make([]api.RolloutPlanVM, 0, len(h.VMs))}
		for _, v := range h.VMs {
			ah.VMs = append(ah.VMs, api.RolloutPlanVM(v))
		}
		out.Hosts = append(out.Hosts, ah)
	}
	return out
}

// readRolloutPlan reads and checks a plan or start body and plans it.
func (s *Server) readRolloutPlan(r *http.Request) (api.RolloutRequest, plan.RolloutPlan, error) {
	var req api.RolloutRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return req, plan.RolloutPlan{}, err
	}
	st := s.node.FSM().State()
	pr, ferr := s.rolloutRequest(st, &req)
	if ferr != nil {
		return req, plan.RolloutPlan{}, ferr
	}
	return req, s.planRollout(st, pr), nil
}

func (s *Server) handleRolloutPlan(w http.ResponseWriter, r *http.Request) (any, error) {
	_, plan, err := s.readRolloutPlan(r)
	if err != nil {
		return nil, err
	}
	return toAPIPlan(plan), nil
}

func newRolloutID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "ro-" + hex.EncodeToString(b)
}

func (s *Server) handleRolloutStart(w http.ResponseWriter, r *http.Request) (any, error) {
	req, plan, err := s.readRolloutPlan(r)
	if err != nil {
		return nil, err
	}
	if !plan.OK() && !req.Force {
		var bs []api.Blocker
		for _, b := range plan.Blockers {
			bs = append(bs, api.Blocker{Reason: b})
		}
		for _, h := range plan.Hosts {
			for _, b := range h.Blockers {
				bs = append(bs, api.Blocker{Reason: "host " + h.Host + ": " + b})
			}
		}
		return nil, &httpapi.Error{Code: http.StatusConflict, Msg: "the rollout plan has blockers (herd rollout plan shows them); set force to start anyway", Field: "force", Blockers: bs}
	}
	ro := cluster.Rollout{ID: newRolloutID(), Actor: httpapi.Actor(r), Created: s.clock.Now().UTC(), Parallel: plan.Parallel, Order: req.Order,
		OnFailure: req.OnFailure, Migrate: req.Migrate, Hook: req.Hook, MoveBack: req.MoveBack, Window: req.Window, Force: req.Force}
	for _, h := range plan.Hosts {
		ro.Hosts = append(ro.Hosts, cluster.RolloutHost{Host: h.Host, Wave: h.Wave})
	}
	work := "waits for herd rollout continue, or each host's return after a reboot"
	if req.Hook != "" {
		work = "runs hook " + req.Hook
	}
	msg := fmt.Sprintf("rollout %s started over %d hosts in %d waves (parallel %d, order %s, on failure %s): each host enters maintenance (migrate %s), %s, and leaves it once back and healthy",
		ro.ID, len(ro.Hosts), len(plan.Waves), ro.Parallel, ro.Order, ro.OnFailure, ro.Migrate, work)
	if plan.ParallelNote != "" {
		msg += "; " + plan.ParallelNote
	}
	ev := cluster.NewEvent("rollout.started", ro.Actor, "", "", msg)
	ev.Operation = ro.ID
	if _, err := s.node.Apply(r.Context(), &cluster.CreateRollout{Rollout: ro, Event: ev}); err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	return httpapi.Reply{Code: http.StatusCreated, Body: s.apiRollout(ro.ID)}, nil
}

func toAPIRollout(r *cluster.Rollout) api.Rollout {
	out := api.Rollout{ID: r.ID, State: string(r.State), Actor: r.Actor, Created: r.Created, Updated: r.Updated, Parallel: r.Parallel,
		Order: r.Order, OnFailure: r.OnFailure, Migrate: r.Migrate, Hook: r.Hook, MoveBack: r.MoveBack, Window: r.Window, Force: r.Force,
		Stopping: r.Stopping, Error: r.Error, Note: r.Note, Hosts: make([]api.RolloutHost, 0, len(r.Hosts)), Counts: map[string]int{}}
	if !r.State.Terminal() && r.Stopping {
		out.State = "stopping"
	}
	for _, h := range r.Hosts {
		out.Hosts = append(out.Hosts, api.RolloutHost{Host: h.Host, Wave: h.Wave, Phase: string(h.Phase), Evacuation: h.Evacuation, Exit: h.Exit,
			HookRuns: h.HookRuns, DownSeen: h.DownSeen, Continued: h.Continued, Note: h.Note, Error: h.Error,
			Started: h.Started, PhaseSince: h.PhaseSince, Finished: h.Finished})
		out.Counts[string(h.Phase)]++
	}
	return out
}

func (s *Server) apiRollout(id string) api.Rollout {
	var out api.Rollout
	s.node.FSM().Read(func(st *cluster.State) {
		if r := st.Rollouts[id]; r != nil {
			out = toAPIRollout(r)
		}
	})
	return out
}

func (s *Server) handleRollouts(w http.ResponseWriter, r *http.Request) (any, error) {
	out := api.Rollouts{Rollouts: []api.Rollout{}}
	s.node.FSM().Read(func(st *cluster.State) {
		for _, ro := range st.SortedRollouts() {
			out.Rollouts = append(out.Rollouts, toAPIRollout(ro))
		}
	})
	return out, nil
}

func (s *Server) handleRollout(w http.ResponseWriter, r *http.Request) (any, error) {
	id := r.PathValue("id")
	var found bool
	s.node.FSM().Read(func(st *cluster.State) { found = st.Rollouts[id] != nil })
	if !found {
		return nil, httpapi.Errorf(http.StatusNotFound, "rollout", "rollout %q not found", id)
	}
	return s.apiRollout(id), nil
}

func (s *Server) handleRolloutControl(action string) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		if err := httpapi.DecodeEmpty(r); err != nil {
			return nil, err
		}
		id := r.PathValue("id")
		words := map[string]string{cluster.RolloutPause: "paused: no host starts; hosts out finish their step",
			cluster.RolloutResume: "resumed", cluster.RolloutCancel: "cancelled: no host starts; it ends once the hosts out are back"}
		ev := cluster.NewEvent("rollout."+action, httpapi.Actor(r), "", "", fmt.Sprintf("rollout %s %s", id, words[action]))
		ev.Operation = id
		if _, err := s.node.Apply(r.Context(), &cluster.RolloutControl{Rollout: id, Action: action, Time: s.clock.Now().UTC(), Event: ev}); err != nil {
			return nil, httpapi.ApplyFailed(err)
		}
		return s.apiRollout(id), nil
	}
}

func (s *Server) handleRolloutContinue(w http.ResponseWriter, r *http.Request) (any, error) {
	var req api.ContinueRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Host == "" {
		return nil, httpapi.Errorf(http.StatusBadRequest, "host", "host: missing; name the host whose work is done")
	}
	id := r.PathValue("id")
	ev := cluster.NewEvent("rollout.continue", httpapi.Actor(r), req.Host, "", fmt.Sprintf("rollout %s: the work on host %s is done (continued by an operator)", id, req.Host))
	ev.Operation = id
	if _, err := s.node.Apply(r.Context(), &cluster.RolloutContinue{Rollout: id, Host: req.Host, Time: s.clock.Now().UTC(), Event: ev}); err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	return s.apiRollout(id), nil
}
