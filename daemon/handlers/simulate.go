package handlers

import (
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/httpapi"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/plan"
)

// SimulateFailure answers POST /v1/simulate/failure: the recovery
// Herd would run if the named hosts failed now, planned from the live state
// by the planner the recovery and operations controllers use. It is served
// on the leader, whose ledger holds the moves in flight, and changes
// nothing.
func (a *API) SimulateFailure(w http.ResponseWriter, r *http.Request) (any, error) {
	var req api.SimulateFailureRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	var st *cluster.State
	var usage *cluster.Usage
	var before int
	doc := a.Policy()
	a.State.ReadWithUsage(func(live *cluster.State, u *cluster.Usage) {
		st, usage = live.Snapshot(), cloneUsage(u)
		before = a.FailoverCapacity(doc, live, u)
	})
	if len(req.Hosts) == 0 {
		return nil, httpapi.Errorf(http.StatusBadRequest, "hosts", "name at least one host to fail")
	}
	seen := map[string]int{}
	for i, h := range req.Hosts {
		field := fmt.Sprintf("hosts[%d]", i)
		if first, dup := seen[h]; dup {
			return nil, httpapi.Errorf(http.StatusBadRequest, field, "host %q is named twice (also hosts[%d])", h, first)
		}
		seen[h] = i
		if st.Hosts[h] == nil {
			return nil, httpapi.Errorf(http.StatusNotFound, field, "unknown host %q", h)
		}
	}
	out := a.simulateFailure(doc, st, usage, req.Hosts, time.Now())
	out.FailoverBefore = before
	return out, nil
}

// simulateFailure plans the recovery of hosts failing at now, with st's
// usage and the policy doc.
func (a *API) simulateFailure(doc *policy.Document, st *cluster.State, usage *cluster.Usage, hosts []string, now time.Time) *api.FailureSimulation {
	comp := a.Compiled(doc, st)
	out := &api.FailureSimulation{Hosts: []api.SimulatedHost{}, Steps: []api.RecoveryStep{}, FailoverMin: doc.Failover.MinHostFailures, Time: now.UTC()}
	var failed []string
	working := st.RolloutWorkingHosts()
	for _, name := range hosts {
		h := st.Hosts[name]
		sh := api.SimulatedHost{Name: name, Health: string(h.Health), VMs: usage.Hosts[name].VMs, Simulated: true}
		switch op := st.ActiveOperationOn(name); {
		case op != nil && op.Kind == cluster.OpRecover:
			sh.Simulated = false
			sh.Note = fmt.Sprintf("already fenced and being recovered by operation %s (herd op show %s): not simulated again", op.ID, op.ID)
		case working[name]:
			sh.Simulated = false
			sh.Note = "in its rollout work: going down is expected there (a reboot), so it would be neither fenced nor recovered"
		case h.Health == cluster.HealthFenced:
			sh.Note = "already fenced: its recovery starts now"
		case h.Health == cluster.HealthDead:
			sh.Note = "already dead: it is being fenced, then recovered as planned here"
		case h.Health == cluster.HealthSuspect:
			sh.Note = "already suspect: it looks down now"
		case h.Maintenance != cluster.MaintenanceOff:
			sh.Note = fmt.Sprintf("in maintenance (%s): planned with the VMs it still holds", h.Maintenance)
		}
		if sh.Simulated {
			failed = append(failed, name)
		}
		out.Hosts = append(out.Hosts, sh)
	}
	rp := plan.Recovery(plan.RecoveryInput{State: st, Usage: usage, Ledger: a.Ledger.Reservations(), Failed: failed,
		Policy: comp, Recovery: doc.Recovery, Options: a.Options(doc, st, doc.Maintenance.PerTarget)})
	for _, step := range rp.Steps {
		out.Steps = append(out.Steps, api.RecoveryStep(step))
	}
	out.Recreated, out.Registered, out.Blocked = rp.Recreated, rp.Registered, rp.Blocked
	out.FailoverAfter = rp.FailoverAfter
	out.Notes = failureNotes(st, doc, failed, now)
	if out.FailoverAfter < doc.Failover.MinHostFailures {
		out.Notes = append(out.Notes, fmt.Sprintf("failover capacity after: %d hosts, below failover.min_host_failures (%d)", out.FailoverAfter, doc.Failover.MinHostFailures))
	}
	return out
}

// failureNotes says what would keep recovery from running on its own: the
// fencing storm guard, recovery.automatic off.
func failureNotes(st *cluster.State, doc *policy.Document, hosts []string, now time.Time) []string {
	var notes []string
	working := st.RolloutWorkingHosts()
	view := make(map[string]*cluster.Host, len(st.Hosts))
	for n, h := range st.Hosts {
		if !working[n] { // down on purpose: no storm (as recovery counts)
			view[n] = h
		}
	}
	for _, n := range hosts {
		if h := view[n]; h != nil && h.Health != cluster.HealthDead && h.Health != cluster.HealthFenced {
			nh := *h
			nh.Health, nh.DownSince = cluster.HealthDead, now
			view[n] = &nh
		}
	}
	r := doc.Recovery
	if sc := policy.CountStorm(view, now, doc.Health.DeadAfter); sc.Storm(r.StormThreshold) {
		notes = append(notes, fmt.Sprintf("%d of %d hosts would look dead, more than recovery.storm_threshold (%.0f%%): the fencing storm guard fences nothing automatically; this plan runs once an operator confirms each host is off (herd host status HOST OFFLINE --confirm-fenced)",
			sc.Dead, sc.Total, r.StormThreshold*100))
	}
	if !r.Automatic {
		notes = append(notes, "recovery.automatic is off: this plan runs once an operator confirms each host is off (herd host status HOST OFFLINE --confirm-fenced)")
	}
	return notes
}

// cloneUsage copies u, which the FSM keeps changing, for use after its read.
func cloneUsage(u *cluster.Usage) *cluster.Usage {
	c := &cluster.Usage{Hosts: maps.Clone(u.Hosts), ByPower: maps.Clone(u.ByPower), RunningMemory: make(map[string]map[int64]int, len(u.RunningMemory))}
	for h, sizes := range u.RunningMemory {
		c.RunningMemory[h] = maps.Clone(sizes)
	}
	return c
}
