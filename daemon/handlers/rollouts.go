package handlers

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/httpapi"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/placement"
	"github.com/herd-project/herd/policy/plan"
)

// rolloutHosts resolves which hosts a request names, in the order given.
func rolloutHosts(st *cluster.State, doc *policy.Document, comp *placement.Compiled, req api.RolloutRequest) ([]string, *httpapi.Error) {
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
func (a *API) rolloutRequest(st *cluster.State, req *api.RolloutRequest) (plan.RolloutRequest, *httpapi.Error) {
	doc := a.Policy()
	if req.Parallel == 0 {
		req.Parallel = 1
	}
	if req.Order == "" {
		req.Order = plan.OrderFewestVMs
	}
	if req.Migrate == "" {
		req.Migrate = string(placement.MigrateAll)
	}
	if req.OnFailure == "" {
		req.OnFailure = cluster.OnFailureStop
	}
	switch {
	case req.Parallel < 1 || req.Parallel > 64:
		return plan.RolloutRequest{}, httpapi.BadField("parallel", "parallel must be 1 to 64, got %d", req.Parallel)
	case !slices.Contains(plan.RolloutOrders, req.Order):
		return plan.RolloutRequest{}, httpapi.BadField("order", "order %q is not one of %s", req.Order, strings.Join(plan.RolloutOrders, ", "))
	case req.Migrate != string(placement.MigrateAll) && req.Migrate != string(placement.MigrateActiveOnly):
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
	comp := a.Compiled(doc, st)
	hosts, ferr := rolloutHosts(st, doc, comp, *req)
	if ferr != nil {
		return plan.RolloutRequest{}, ferr
	}
	pr := plan.RolloutRequest{Hosts: hosts, Parallel: req.Parallel, Order: req.Order, Migrate: placement.MigrateMode(req.Migrate),
		MinHostFailures: doc.Failover.MinHostFailures, History: migrationHistory(st),
		Limits: placement.Limits{PerSource: doc.Maintenance.PerSource, PerTarget: doc.Maintenance.PerTarget, Cluster: doc.Maintenance.Cluster}}
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

func (a *API) planRollout(st *cluster.State, pr plan.RolloutRequest) plan.RolloutPlan {
	o := a.Options(a.Policy(), st, 0)
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
func (a *API) readRolloutPlan(r *http.Request) (api.RolloutRequest, plan.RolloutPlan, error) {
	var req api.RolloutRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return req, plan.RolloutPlan{}, err
	}
	st := a.State.State()
	pr, ferr := a.rolloutRequest(st, &req)
	if ferr != nil {
		return req, plan.RolloutPlan{}, ferr
	}
	return req, a.planRollout(st, pr), nil
}

// RolloutPlan plans a rollout without starting it (POST
// /v1/rollouts/plan, on the leader).
func (a *API) RolloutPlan(w http.ResponseWriter, r *http.Request) (any, error) {
	_, plan, err := a.readRolloutPlan(r)
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

// RolloutStart records a rollout that the rollout controller then runs
// (POST /v1/rollouts).
func (a *API) RolloutStart(w http.ResponseWriter, r *http.Request) (any, error) {
	req, plan, err := a.readRolloutPlan(r)
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
	ro := cluster.Rollout{ID: newRolloutID(), Actor: httpapi.Actor(r), Created: a.Clock.Now().UTC(), Parallel: plan.Parallel, Order: req.Order,
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
	if _, err := a.Raft.Apply(r.Context(), &cluster.CreateRollout{Rollout: ro, Event: ev}); err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	return httpapi.Reply{Code: http.StatusCreated, Body: a.apiRollout(ro.ID)}, nil
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

func (a *API) apiRollout(id string) api.Rollout {
	var out api.Rollout
	a.State.Read(func(st *cluster.State) {
		if r := st.Rollouts[id]; r != nil {
			out = toAPIRollout(r)
		}
	})
	return out
}

// Rollouts lists the rollouts (GET /v1/rollouts).
func (a *API) Rollouts(w http.ResponseWriter, r *http.Request) (any, error) {
	out := api.Rollouts{Rollouts: []api.Rollout{}}
	a.State.Read(func(st *cluster.State) {
		for _, ro := range st.SortedRollouts() {
			out.Rollouts = append(out.Rollouts, toAPIRollout(ro))
		}
	})
	return out, nil
}

// Rollout is one rollout with each host's phase (GET /v1/rollouts/{id}).
func (a *API) Rollout(w http.ResponseWriter, r *http.Request) (any, error) {
	id := r.PathValue("id")
	var found bool
	a.State.Read(func(st *cluster.State) { found = st.Rollouts[id] != nil })
	if !found {
		return nil, httpapi.Errorf(http.StatusNotFound, "rollout", "rollout %q not found", id)
	}
	return a.apiRollout(id), nil
}

// RolloutControl pauses, resumes or cancels a rollout (POST
// /v1/rollouts/{id}/pause|resume|cancel).
func (a *API) RolloutControl(action string) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		if err := httpapi.DecodeEmpty(r); err != nil {
			return nil, err
		}
		id := r.PathValue("id")
		words := map[string]string{cluster.RolloutPause: "paused: no host starts; hosts out finish their step",
			cluster.RolloutResume: "resumed", cluster.RolloutCancel: "cancelled: no host starts; it ends once the hosts out are back"}
		ev := cluster.NewEvent("rollout."+action, httpapi.Actor(r), "", "", fmt.Sprintf("rollout %s %s", id, words[action]))
		ev.Operation = id
		if _, err := a.Raft.Apply(r.Context(), &cluster.RolloutControl{Rollout: id, Action: action, Time: a.Clock.Now().UTC(), Event: ev}); err != nil {
			return nil, httpapi.ApplyFailed(err)
		}
		return a.apiRollout(id), nil
	}
}

// RolloutContinue says a host's work in a rollout is done (POST
// /v1/rollouts/{id}/continue).
func (a *API) RolloutContinue(w http.ResponseWriter, r *http.Request) (any, error) {
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
	if _, err := a.Raft.Apply(r.Context(), &cluster.RolloutContinue{Rollout: id, Host: req.Host, Time: a.Clock.Now().UTC(), Event: ev}); err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	return a.apiRollout(id), nil
}
