package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/httpapi"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/failover"
	"github.com/herd-project/herd/policy/plan"
)

func newOpID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "op-" + hex.EncodeToString(b)
}

// evacuationRequest checks an enable body and turns it into the planner's
// request.
func evacuationRequest(st *cluster.State, host string, req api.MaintenanceRequest) (policy.EvacuationRequest, *httpapi.Error) {
	for field, v := range map[string][]string{"poweron_vms": req.PowerOnVMs, "live_migrate_back_vms": req.LiveMigrateBackVMs,
		"offline_migrate_back_vms": req.OfflineMigrateBackVMs} {
		if len(v) > 0 {
			return policy.EvacuationRequest{}, httpapi.BadField(field, "%s goes with status disable, not enable", field)
		}
	}
	mode := policy.MigrateMode(req.Migrate)
	if mode == "" {
		mode = policy.MigrateNone
	}
	if !mode.Valid() {
		return policy.EvacuationRequest{}, httpapi.BadField("migrate", "migrate %q is not one of none, active-only, all", req.Migrate)
	}
	er := policy.EvacuationRequest{Host: host, Migrate: mode, TargetHost: req.TargetHost, ShutdownVMs: req.ShutdownVMs}
	if err := er.Validate(); err != nil {
		if fe, ok := err.(*policy.FieldError); ok {
			return er, httpapi.BadField(fe.Field, "%s", fe.Msg)
		}
		return er, httpapi.BadField("", "%v", err)
	}
	if req.TargetHost != "" && st.Hosts[req.TargetHost] == nil {
		return er, &httpapi.Error{Code: http.StatusNotFound, Field: "target_host", Msg: fmt.Sprintf("target host %q not found", req.TargetHost)}
	}
	if req.TargetHost != "" && mode == policy.MigrateNone {
		return er, httpapi.BadField("target_host", "target_host needs migrate active-only or all")
	}
	return er, nil
}

func toAPIItems(items []policy.Item) []api.PrecheckItem {
	out := make([]api.PrecheckItem, 0, len(items))
	for _, it := range items {
		out = append(out, api.PrecheckItem{VM: it.VM, Name: it.Name, Action: it.Action, Target: it.Target, MemoryBytes: it.MemoryBytes, Reason: it.Reason})
	}
	return out
}

func toAPIBlockers(bs []policy.Blocker) []api.Blocker {
	out := make([]api.Blocker, 0, len(bs))
	for _, b := range bs {
		vm := b.Name
		if vm == "" {
			vm = b.VM
		}
		out = append(out, api.Blocker{VM: vm, Reason: b.Reason})
	}
	return out
}

func (s *Server) precheck(st *cluster.State, er policy.EvacuationRequest) policy.Precheck {
	l, o := s.ops.Planning(st)
	if er.TargetHost != "" {
		o.Reserved = nil // an operator's explicit target
	}
	return policy.PrecheckEvacuation(st, l, er, o)
}

func (s *Server) handlePrecheck(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("host")
	var req api.MaintenanceRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	if req.Status != "" && req.Status != "enable" {
		return nil, httpapi.Errorf(http.StatusBadRequest, "status", "a precheck is for status enable, not %q", req.Status)
	}
	st := s.node.FSM().State()
	h, er, err := enableTarget(st, name, req)
	if err != nil {
		return nil, err
	}
	pc := s.precheck(st, er)
	if b := s.failoverBlocker(st, name); b != "" {
		pc.Blockers = append(pc.Blockers, policy.Blocker{Reason: b + "; set force to enter anyway"})
	}
	out := api.Precheck{Host: name, LiveMigrateVMs: toAPIItems(pc.LiveMigrate), OfflineMigrateVMs: toAPIItems(pc.OfflineMigrate),
		ShutdownVMs: toAPIItems(pc.Shutdown), StayVMs: toAPIItems(pc.Stay), Blockers: toAPIBlockers(pc.Blockers)}
	if h.Maintenance != cluster.MaintenanceOff {
		out.Blockers = append(out.Blockers, api.Blocker{Reason: fmt.Sprintf("host is already in maintenance (%s)", h.Maintenance)})
	}
	return out, nil
}

func (s *Server) handleMaintenance(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("host")
	var req api.MaintenanceRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	switch req.Status {
	case "enable":
		return s.enableMaintenance(r, name, req)
	case "disable":
		return s.disableMaintenance(r, name, req)
	default:
		return nil, httpapi.BadField("status", "status %q is not one of enable, disable", req.Status)
	}
}

// enableTarget finds the host of an enable (or precheck) request and
// checks the request.
func enableTarget(st *cluster.State, name string, req api.MaintenanceRequest) (*cluster.Host, policy.EvacuationRequest, error) {
	h := st.Hosts[name]
	if h == nil {
		return nil, policy.EvacuationRequest{}, httpapi.NotFound("host", "host %q not found", name)
	}
	er, ferr := evacuationRequest(st, name, req)
	if ferr != nil {
		return nil, er, ferr
	}
	return h, er, nil
}

func (s *Server) enableMaintenance(r *http.Request, name string, req api.MaintenanceRequest) (any, error) {
	id, err := s.enterMaintenance(r.Context(), name, req, httpapi.Actor(r), "", "")
	if err != nil {
		return nil, maintenanceError(err)
	}
	return httpapi.Accepted(api.OperationRef{Operation: id}), nil
}

// maintenanceError is the answer for a request problem (naming its field,
// with the blockers) or a refused or uncommitted raft write.
func maintenanceError(err error) *httpapi.Error {
	var fe *httpapi.Error
	if errors.As(err, &fe) {
		return fe
	}
	return httpapi.ApplyFailed(err)
}

// enterMaintenance starts host name's evacuation as req asks (an API
// request, or a rollout's step); a repeated request gets the operation
// under way. id names the operation ("": a new id); why, when set, says
// what asked for it. Errors are *httpapi.Error (nothing changed) or the raft
// write's.
func (s *Server) enterMaintenance(ctx context.Context, name string, req api.MaintenanceRequest, who, id, why string) (string, error) {
	st := s.node.FSM().State()
	h := st.Hosts[name]
	if h == nil {
		return "", &httpapi.Error{Code: http.StatusNotFound, Field: "host", Msg: fmt.Sprintf("host %q not found", name)}
	}
	er, ferr := evacuationRequest(st, name, req)
	if ferr != nil {
		return "", ferr
	}
	switch h.Maintenance {
	case cluster.MaintenanceOff:
	case cluster.MaintenanceEntering, cluster.MaintenanceOn:
		// Repeating an enable gives the same operation and stops nothing again.
		if same := s.sameEnable(name, er); same != "" {
			return same, nil
		}
		return "", httpapi.Conflict("status", "host %s is already in maintenance (%s, operation %s) with other settings", name, h.Maintenance, h.Operation)
	case cluster.MaintenanceError, cluster.MaintenanceCancelled:
		return "", httpapi.Conflict("status", "host %s is in maintenance %s: retry operation %s (herd op retry %s) or disable maintenance", name, h.Maintenance, h.Operation, h.Operation)
	default:
		return "", httpapi.Conflict("status", "host %s is %s maintenance; wait for operation %s", name, h.Maintenance, h.Operation)
	}
	if h.Admin == cluster.Offline {
		return "", httpapi.Conflict("status", "host %s is OFFLINE (declared dead): it needs recovery, not maintenance", name)
	}
	pc := s.precheck(st, er)
	if !pc.OK() {
		fe := httpapi.Conflict("status", "host %s cannot enter maintenance", name)
		fe.Blockers = toAPIBlockers(pc.Blockers)
		return "", fe
	}
	if b := s.failoverBlocker(st, name); b != "" && !req.Force {
		fe := httpapi.Conflict("force", "host %s cannot enter maintenance", name)
		fe.Blockers = []api.Blocker{{Reason: b + "; set force to enter anyway"}}
		return "", fe
	}
	id, err := s.startEvacuation(ctx, st, name, er, pc, who, id, why)
	var ae *cluster.ApplyError
	if errors.As(err, &ae) && ae.Code == http.StatusConflict {
		// An identical request committed first (concurrent duplicates):
		// it asked for what is now under way, so it gets the same answer.
		if same := s.sameEnable(name, er); same != "" {
			return same, nil
		}
	}
	return id, err
}

// sameEnable returns the operation already taking host into maintenance
// the way er asks, or "".
func (s *Server) sameEnable(host string, er policy.EvacuationRequest) string {
	var id string
	s.node.FSM().Read(func(st *cluster.State) {
		h := st.Hosts[host]
		if h == nil || h.Maintenance != cluster.MaintenanceEntering && h.Maintenance != cluster.MaintenanceOn {
			return
		}
		if op := st.Operations[h.Operation]; op != nil && sameEvacuation(st, op, er) {
			id = op.ID
		}
	})
	return id
}

// startEvacuation records an evacuation that passed its precheck; why, when
// set, says what asked for it (in the event).
func (s *Server) startEvacuation(ctx context.Context, st *cluster.State, name string, er policy.EvacuationRequest, pc policy.Precheck, who, id, why string) (string, error) {
	if id == "" {
		id = newOpID()
	}
	op := cluster.Operation{ID: id, Kind: cluster.OpEvacuate, Host: name, Migrate: string(er.Migrate), TargetHost: er.TargetHost,
		Actor: who, Created: time.Now().UTC(), MaxAttempts: s.Policy().Maintenance.Attempts}
	op.Items = plan.EvacuationItems(st, name, pc)
	msg := fmt.Sprintf("host %s entering maintenance (migrate %s): %d to live-migrate, %d to offline-migrate, %d to shut down",
		name, er.Migrate, len(pc.LiveMigrate), len(pc.OfflineMigrate), len(pc.Shutdown))
	if er.TargetHost != "" {
		msg += ", all to " + er.TargetHost
	}
	if why != "" {
		msg += "; " + why
	}
	ev := cluster.NewEvent("maintenance.entering", op.Actor, name, "", msg)
	ev.Operation = op.ID
	if _, err := s.node.Apply(ctx, &cluster.StartOperation{Op: op, Event: ev}); err != nil {
		return "", err
	}
	return op.ID, nil
}

// evacuateDegraded moves the running VMs off a host whose hardware is
// failing (the policy's degraded_query), through maintenance, before it
// dies. A host that is not AVAILABLE, alive and out of maintenance is left
// alone; blockers are recorded as an event.
func (s *Server) evacuateDegraded(ctx context.Context, name, why string) error {
	_, err := s.evacuateAuto(ctx, name, why, autoEvacuation{who: "health", blockedType: "health.degraded", seems: "looks degraded", cause: "hardware degraded: "})
	return err
}

// autoEvacuation says who starts an evacuateAuto and how it is told.
type autoEvacuation struct {
	who         string
	blockedType string // the event type of a blocked evacuation
	seems       string // "host NAME <seems> (why) but cannot be evacuated"
	cause       string // put before why in the evacuation's event
	// fromNotAccepting also evacuates a NOT_ACCEPTING host (an alert's
	// escalation after a not-accepting one).
	fromNotAccepting bool
}

// evacuateAuto is the evacuation Herd starts by itself (degraded_query, an
// alert): maintenance with live migration of the running VMs, only of a
// host that is AVAILABLE (or NOT_ACCEPTING, when a says so), alive and
// out of maintenance. Blockers are recorded as an event; the
// evacuation's event says a.cause+why. It says what it did.
func (s *Server) evacuateAuto(ctx context.Context, name, why string, a autoEvacuation) (string, error) {
	st := s.node.FSM().State()
	h := st.Hosts[name]
	switch {
	case h == nil:
		return "unchanged: host not found", nil
	case h.Maintenance != cluster.MaintenanceOff:
		return fmt.Sprintf("unchanged: host is in maintenance (%s, operation %s)", h.Maintenance, h.Operation), nil
	case h.Admin != cluster.Available && !(a.fromNotAccepting && h.Admin == cluster.NotAccepting):
		return fmt.Sprintf("unchanged: host is %s", h.Admin), nil
	case h.Health != cluster.HealthAlive:
		return fmt.Sprintf("unchanged: host is %s", h.Health), nil
	}
	er, ferr := evacuationRequest(st, name, api.MaintenanceRequest{Status: "enable", Migrate: "active-only"})
	if ferr != nil {
		return "", errors.New(ferr.Msg)
	}
	pc := s.precheck(st, er)
	if !pc.OK() {
		var reasons []string
		for _, b := range pc.Blockers {
			reasons = append(reasons, b.Reason)
		}
		msg := fmt.Sprintf("host %s %s (%s) but cannot be evacuated: %s", name, a.seems, why, strings.Join(reasons, "; "))
		_, err := s.node.Apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{cluster.NewEvent(a.blockedType, a.who, name, "", msg)}})
		return "blocked: " + strings.Join(reasons, "; "), err
	}
	id, err := s.startEvacuation(ctx, st, name, er, pc, a.who, "", a.cause+why)
	if err != nil {
		return "", err
	}
	return "evacuating: operation " + id, nil
}

// sameEvacuation reports whether a repeated enable asks for what op does.
func sameEvacuation(st *cluster.State, op *cluster.Operation, er policy.EvacuationRequest) bool {
	if op.Kind != cluster.OpEvacuate || op.Migrate != string(er.Migrate) || op.TargetHost != er.TargetHost {
		return false
	}
	var had []string
	for _, it := range op.Items {
		if it.Action == cluster.ActionShutdown {
			had = append(had, it.VM)
		}
	}
	var want []string
	for _, n := range er.ShutdownVMs {
		for _, it := range op.Items {
			if it.VM == n || it.Name == n {
				want = append(want, it.VM)
			}
		}
	}
	sort.Strings(had)
	sort.Strings(want)
	return slices.Equal(had, slices.Compact(want))
}

// leftVMs lists what left host for its maintenance (operation op), and
// where each VM is now.
func leftVMs(st *cluster.State, host string) api.ExitPrecheck {
	out := api.ExitPrecheck{Host: host, ShutdownVMs: []api.LeftVM{}, LiveMigratedVMs: []api.LeftVM{}, OfflineMigratedVMs: []api.LeftVM{}}
	h := st.Hosts[host]
	if h == nil {
		return out
	}
	op := st.Operations[h.Operation]
	if op != nil && op.Kind == cluster.OpExit {
		op = st.Operations[op.Parent]
	}
	if op == nil || op.Kind != cluster.OpEvacuate {
		return out
	}
	out.Operation = op.ID
	for _, it := range op.Items {
		if it.State != cluster.ItemDone {
			continue
		}
		l := api.LeftVM{VM: it.VM, Name: it.Name, Action: it.Action, MemoryBytes: it.MemoryBytes}
		if it.Action != cluster.ActionShutdown {
			l.MovedTo = it.Target
		}
		if vm := st.VMs[it.VM]; vm != nil {
			l.NowOn, l.PowerState = vm.Host, string(vm.Power)
		} else {
			l.NowOn, l.PowerState = "", "gone"
		}
		switch it.Action {
		case cluster.ActionShutdown:
			out.ShutdownVMs = append(out.ShutdownVMs, l)
		case cluster.ActionLiveMigrate:
			out.LiveMigratedVMs = append(out.LiveMigratedVMs, l)
		case cluster.ActionOfflineMigrate:
			out.OfflineMigratedVMs = append(out.OfflineMigratedVMs, l)
		}
	}
	return out
}

func (s *Server) handleExitPrecheck(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("host")
	st := s.node.FSM().State()
	if st.Hosts[name] == nil {
		return nil, httpapi.Errorf(http.StatusNotFound, "host", "host %q not found", name)
	}
	out := leftVMs(st, name)
	out.MigrateBackOnExit = s.Policy().Maintenance.MigrateBackOnExit
	return out, nil
}

// pick resolves names or ids against the VMs that left, for one field.
func pick(field string, names []string, left []api.LeftVM, what string) ([]api.LeftVM, *httpapi.Error) {
	var out []api.LeftVM
	seen := map[string]bool{}
	for _, n := range names {
		var found *api.LeftVM
		for i := range left {
			if left[i].VM == n || left[i].Name == n {
				found = &left[i]
				break
			}
		}
		if found == nil {
			return nil, httpapi.BadField(field, "VM %q did not %s for this maintenance", n, what)
		}
		if !seen[found.VM] {
			seen[found.VM] = true
			out = append(out, *found)
		}
	}
	return out, nil
}

func (s *Server) disableMaintenance(r *http.Request, name string, req api.MaintenanceRequest) (any, error) {
	id, err := s.exitMaintenance(r.Context(), name, req, httpapi.Actor(r), "")
	if err != nil {
		return nil, maintenanceError(err)
	}
	return httpapi.Accepted(api.OperationRef{Operation: id}), nil
}

// exitMaintenance starts host name's exit from maintenance as req asks (an
// API request, or a rollout's step); a host already exiting gives its
// operation. id names the operation ("": a new id). Errors are *httpapi.Error
// (nothing changed) or the raft write's.
func (s *Server) exitMaintenance(ctx context.Context, name string, req api.MaintenanceRequest, who, id string) (string, error) {
	if req.Migrate != "" || req.TargetHost != "" || len(req.ShutdownVMs) > 0 {
		field := "migrate"
		if req.TargetHost != "" {
			field = "target_host"
		} else if len(req.ShutdownVMs) > 0 {
			field = "shutdown_vms"
		}
		return "", httpapi.BadField(field, "%s goes with status enable, not disable", field)
	}
	st := s.node.FSM().State()
	h := st.Hosts[name]
	if h == nil {
		return "", &httpapi.Error{Code: http.StatusNotFound, Field: "host", Msg: fmt.Sprintf("host %q not found", name)}
	}
	switch h.Maintenance {
	case cluster.MaintenanceOn, cluster.MaintenanceError, cluster.MaintenanceCancelled:
	case cluster.MaintenanceExiting:
		return h.Operation, nil
	case cluster.MaintenanceEntering:
		return "", httpapi.Conflict("status", "host %s is entering maintenance: cancel operation %s first (herd op cancel %s)", name, h.Operation, h.Operation)
	default:
		return "", httpapi.Conflict("status", "host %s is not in maintenance", name)
	}
	left := leftVMs(st, name)
	powerOn, ferr := pick("poweron_vms", req.PowerOnVMs, left.ShutdownVMs, "shut down")
	if ferr != nil {
		return "", ferr
	}
	liveBack, ferr := pick("live_migrate_back_vms", req.LiveMigrateBackVMs, left.LiveMigratedVMs, "live-migrate away")
	if ferr != nil {
		return "", ferr
	}
	offBack, ferr := pick("offline_migrate_back_vms", req.OfflineMigrateBackVMs, left.OfflineMigratedVMs, "offline-migrate away")
	if ferr != nil {
		return "", ferr
	}
	if s.Policy().Maintenance.MigrateBackOnExit {
		liveBack, offBack = nil, nil
		for _, l := range append(append([]api.LeftVM{}, left.LiveMigratedVMs...), left.OfflineMigratedVMs...) {
			if l.PowerState == string(cluster.PoweredOn) {
				liveBack = append(liveBack, l)
			} else if l.PowerState != "gone" {
				offBack = append(offBack, l)
			}
		}
	}
	if id == "" {
		id = newOpID()
	}
	op := cluster.Operation{ID: id, Kind: cluster.OpExit, Host: name, Parent: left.Operation, TargetHost: name, Actor: who, Created: time.Now().UTC()}
	add := func(l api.LeftVM, action string, power cluster.PowerState, field string) *httpapi.Error {
		vm := st.VMs[l.VM]
		if vm == nil {
			return httpapi.Conflict(field, "VM %s no longer exists", l.Name)
		}
		if vm.Power != power {
			return httpapi.Conflict(field, "VM %s is %s; %s needs it %s", vm.Name, vm.Power, action, power)
		}
		if action != cluster.ActionPowerOn && vm.Host == name {
			return nil // already back
		}
		op.Items = append(op.Items, cluster.OpItem{VM: vm.ID, Name: vm.Name, Action: action, From: vm.Host, MemoryBytes: vm.MemoryBytes, Priority: vm.Priority})
		return nil
	}
	for _, l := range powerOn {
		if ferr := add(l, cluster.ActionPowerOn, cluster.PoweredOff, "poweron_vms"); ferr != nil {
			return "", ferr
		}
	}
	for _, l := range liveBack {
		if ferr := add(l, cluster.ActionLiveMigrate, cluster.PoweredOn, "live_migrate_back_vms"); ferr != nil {
			return "", ferr
		}
	}
	for _, l := range offBack {
		if ferr := add(l, cluster.ActionOfflineMigrate, cluster.PoweredOff, "offline_migrate_back_vms"); ferr != nil {
			return "", ferr
		}
	}
	ev := cluster.NewEvent("maintenance.exiting", op.Actor, name, "", fmt.Sprintf("host %s leaving maintenance: %d to power on, %d to live-migrate back, %d to offline-migrate back",
		name, len(powerOn), len(liveBack), len(offBack)))
	ev.Operation = op.ID
	if _, err := s.node.Apply(ctx, &cluster.StartOperation{Op: op, Event: ev}); err != nil {
		return "", err
	}
	return op.ID, nil
}

func (s *Server) handleOperations(w http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	host, state := q.Get("host"), q.Get("state")
	if state != "" && !slices.Contains([]string{"running", "succeeded", "failed", "cancelled"}, state) {
		return nil, httpapi.Errorf(http.StatusBadRequest, "state", "state %q is not one of running, succeeded, failed, cancelled", state)
	}
	st := s.node.FSM().State()
	out := api.Operations{Operations: []api.Operation{}}
	for _, op := range st.SortedOperations() {
		if (host == "" || op.Host == host || op.TargetHost == host) && (state == "" || string(op.State) == state) {
			out.Operations = append(out.Operations, api.NewOperation(op))
		}
	}
	return out, nil
}

func (s *Server) handleOperation(w http.ResponseWriter, r *http.Request) (any, error) {
	op := s.node.FSM().Operation(r.PathValue("id"))
	if op == nil {
		return nil, httpapi.Errorf(http.StatusNotFound, "operation", "operation %q not found", r.PathValue("id"))
	}
	return api.NewOperation(op), nil
}

func (s *Server) handleCancelOperation(w http.ResponseWriter, r *http.Request) (any, error) {
	// Cancelling what is cancelled already (or stopping) answers as the
	// first cancel did, and logs nothing more.
	if op := s.node.FSM().Operation(r.PathValue("id")); op != nil && (op.Cancelled || op.State == cluster.OpCancelled) {
		if err := httpapi.DecodeEmpty(r); err != nil {
			return nil, err
		}
		return api.NewOperation(op), nil
	}
	return s.operationCommand(r, func(id string, ev cluster.Event) cluster.Command {
		ev.Type, ev.Message = "operation.cancelled", "operation "+id+" cancelled: steps in flight finish, nothing new starts"
		return &cluster.CancelOperation{Op: id, Time: ev.Time, Event: ev}
	})
}

func (s *Server) handleRetryOperation(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.operationCommand(r, func(id string, ev cluster.Event) cluster.Command {
		ev.Type, ev.Message = "operation.retried", "operation "+id+" retried: failed and cancelled steps start over"
		return &cluster.RetryOperation{Op: id, Time: ev.Time, Event: ev}
	})
}

func (s *Server) operationCommand(r *http.Request, build func(id string, ev cluster.Event) cluster.Command) (any, error) {
	if err := httpapi.DecodeEmpty(r); err != nil {
		return nil, err
	}
	id := r.PathValue("id")
	op := s.node.FSM().Operation(id)
	if op == nil {
		return nil, httpapi.Errorf(http.StatusNotFound, "operation", "operation %q not found", id)
	}
	ev := cluster.NewEvent("", httpapi.Actor(r), op.Host, "", "")
	ev.Operation = id
	if _, err := s.node.Apply(r.Context(), build(id, ev)); err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	return api.NewOperation(s.node.FSM().Operation(id)), nil
}

// failoverBlocker says why closing host would leave the cluster unable to
// absorb the host failures the policy demands, or "".
func (s *Server) failoverBlocker(st *cluster.State, host string) string {
	doc := s.Policy()
	min := doc.Failover.MinHostFailures
	if min <= 0 {
		return ""
	}
	after := failover.AfterMaintenance(st, host, s.placementOptions(doc, st, 0))
	if after >= min {
		return ""
	}
	return fmt.Sprintf("failover capacity would drop to %d host(s), below the policy minimum of %d (failover.min_host_failures)", after, min)
}
