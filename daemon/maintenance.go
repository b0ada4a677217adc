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
	"github.com/herd-project/herd/policy"
)

func newOpID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "op-" + hex.EncodeToString(b)
}

// fieldErr is a request problem that names its field.
type fieldErr struct {
	code  int
	field string
	msg   string
	// blockers, when set, say what stands in the way.
	blockers []api.Blocker
}

func (e *fieldErr) Error() string { return e.msg }

func (e *fieldErr) write(w http.ResponseWriter) {
	writeJSON(w, e.code, api.Error{Error: e.msg, Field: e.field, Blockers: e.blockers})
}

func badField(field, format string, args ...any) *fieldErr {
	return &fieldErr{code: http.StatusBadRequest, field: field, msg: fmt.Sprintf(format, args...)}
}

func conflictErr(field, format string, args ...any) *fieldErr {
	return &fieldErr{code: http.StatusConflict, field: field, msg: fmt.Sprintf(format, args...)}
}

// evacuationRequest checks an enable body and turns it into the planner's
// request.
func evacuationRequest(st *cluster.State, host string, req api.MaintenanceRequest) (policy.EvacuationRequest, *fieldErr) {
	for field, v := range map[string][]string{"poweron_vms": req.PowerOnVMs, "live_migrate_back_vms": req.LiveMigrateBackVMs,
		"offline_migrate_back_vms": req.OfflineMigrateBackVMs} {
		if len(v) > 0 {
			return policy.EvacuationRequest{}, badField(field, "%s goes with status disable, not enable", field)
		}
	}
	mode := policy.MigrateMode(req.Migrate)
	if mode == "" {
		mode = policy.MigrateNone
	}
	if !mode.Valid() {
		return policy.EvacuationRequest{}, badField("migrate", "migrate %q is not one of none, active-only, all", req.Migrate)
	}
	er := policy.EvacuationRequest{Host: host, Migrate: mode, TargetHost: req.TargetHost, ShutdownVMs: req.ShutdownVMs}
	if err := er.Validate(); err != nil {
		if fe, ok := err.(*policy.FieldError); ok {
			return er, badField(fe.Field, "%s", fe.Msg)
		}
		return er, badField("", "%v", err)
	}
	if req.TargetHost != "" && st.Hosts[req.TargetHost] == nil {
		return er, &fieldErr{code: http.StatusNotFound, field: "target_host", msg: fmt.Sprintf("target host %q not found", req.TargetHost)}
	}
	if req.TargetHost != "" && mode == policy.MigrateNone {
		return er, badField("target_host", "target_host needs migrate active-only or all")
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

func (s *Server) handlePrecheck(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("host")
	var req api.MaintenanceRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Status != "" && req.Status != "enable" {
		writeError(w, http.StatusBadRequest, "status", "a precheck is for status enable, not %q", req.Status)
		return
	}
	st, h, er, ok := enableTarget(w, s.node.FSM().State(), name, req)
	if !ok {
		return
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
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleMaintenance(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("host")
	var req api.MaintenanceRequest
	if !decodeBody(w, r, &req) {
		return
	}
	switch req.Status {
	case "enable":
		s.enableMaintenance(w, r, name, req)
	case "disable":
		s.disableMaintenance(w, r, name, req)
	default:
		writeError(w, http.StatusBadRequest, "status", "status %q is not one of enable, disable", req.Status)
	}
}

// enableTarget finds the host of an enable (or precheck) request and
// checks the request; on a problem it answers and reports false.
func enableTarget(w http.ResponseWriter, st *cluster.State, name string, req api.MaintenanceRequest) (*cluster.State, *cluster.Host, policy.EvacuationRequest, bool) {
	h := st.Hosts[name]
	if h == nil {
		writeError(w, http.StatusNotFound, "host", "host %q not found", name)
		return nil, nil, policy.EvacuationRequest{}, false
	}
	er, ferr := evacuationRequest(st, name, req)
	if ferr != nil {
		ferr.write(w)
		return nil, nil, er, false
	}
	return st, h, er, true
}

func (s *Server) enableMaintenance(w http.ResponseWriter, r *http.Request, name string, req api.MaintenanceRequest) {
	id, err := s.enterMaintenance(r.Context(), name, req, actor(r), "", "")
	if err != nil {
		writeMaintenanceError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, api.OperationRef{Operation: id})
}

// writeMaintenanceError answers with a request problem (naming its field,
// with the blockers) or a refused or uncommitted raft write.
func writeMaintenanceError(w http.ResponseWriter, err error) {
	var fe *fieldErr
	if errors.As(err, &fe) {
		fe.write(w)
		return
	}
	writeApplyError(w, err)
}

// enterMaintenance starts host name's evacuation as req asks (an API
// request, or a rollout's step); a repeated request gets the operation
// under way. id names the operation ("": a new id); why, when set, says
// what asked for it. Errors are *fieldErr (nothing changed) or the raft
// write's.
func (s *Server) enterMaintenance(ctx context.Context, name string, req api.MaintenanceRequest, who, id, why string) (string, error) {
	st := s.node.FSM().State()
	h := st.Hosts[name]
	if h == nil {
		return "", &fieldErr{code: http.StatusNotFound, field: "host", msg: fmt.Sprintf("host %q not found", name)}
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
		return "", conflictErr("status", "host %s is already in maintenance (%s, operation %s) with other settings", name, h.Maintenance, h.Operation)
	case cluster.MaintenanceError, cluster.MaintenanceCancelled:
		return "", conflictErr("status", "host %s is in maintenance %s: retry operation %s (herd op retry %s) or disable maintenance", name, h.Maintenance, h.Operation, h.Operation)
	default:
		return "", conflictErr("status", "host %s is %s maintenance; wait for operation %s", name, h.Maintenance, h.Operation)
	}
	if h.Admin == cluster.Offline {
		return "", conflictErr("status", "host %s is OFFLINE (declared dead): it needs recovery, not maintenance", name)
	}
	pc := s.precheck(st, er)
	if !pc.OK() {
		fe := conflictErr("status", "host %s cannot enter maintenance", name)
		fe.blockers = toAPIBlockers(pc.Blockers)
		return "", fe
	}
	if b := s.failoverBlocker(st, name); b != "" && !req.Force {
		fe := conflictErr("force", "host %s cannot enter maintenance", name)
		fe.blockers = []api.Blocker{{Reason: b + "; set force to enter anyway"}}
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
	op.Items = evacuationItems(st, name, pc)
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
		return "", errors.New(ferr.msg)
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

// evacuationItems turns a precheck into operation steps, in evacuation order.
func evacuationItems(st *cluster.State, host string, pc policy.Precheck) []cluster.OpItem {
	var vms []*cluster.VM
	action := map[string]string{}
	for _, list := range [][]policy.Item{pc.LiveMigrate, pc.OfflineMigrate, pc.Shutdown} {
		for _, it := range list {
			if vm := st.VMs[it.VM]; vm != nil {
				vms = append(vms, vm)
				action[vm.ID] = it.Action
			}
		}
	}
	policy.Order(vms)
	items := make([]cluster.OpItem, 0, len(vms))
	for _, vm := range vms {
		items = append(items, cluster.OpItem{VM: vm.ID, Name: vm.Name, Action: action[vm.ID], From: host, MemoryBytes: vm.MemoryBytes, Priority: vm.Priority})
	}
	return items
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

func (s *Server) handleExitPrecheck(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("host")
	st := s.node.FSM().State()
	if st.Hosts[name] == nil {
		writeError(w, http.StatusNotFound, "host", "host %q not found", name)
		return
	}
	out := leftVMs(st, name)
	out.MigrateBackOnExit = s.Policy().Maintenance.MigrateBackOnExit
	writeJSON(w, http.StatusOK, out)
}

// pick resolves names or ids against the VMs that left, for one field.
func pick(field string, names []string, left []api.LeftVM, what string) ([]api.LeftVM, *fieldErr) {
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
			return nil, badField(field, "VM %q did not %s for this maintenance", n, what)
		}
		if !seen[found.VM] {
			seen[found.VM] = true
			out = append(out, *found)
		}
	}
	return out, nil
}

func (s *Server) disableMaintenance(w http.ResponseWriter, r *http.Request, name string, req api.MaintenanceRequest) {
	id, err := s.exitMaintenance(r.Context(), name, req, actor(r), "")
	if err != nil {
		writeMaintenanceError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, api.OperationRef{Operation: id})
}

// exitMaintenance starts host name's exit from maintenance as req asks (an
// API request, or a rollout's step); a host already exiting gives its
// operation. id names the operation ("": a new id). Errors are *fieldErr
// (nothing changed) or the raft write's.
func (s *Server) exitMaintenance(ctx context.Context, name string, req api.MaintenanceRequest, who, id string) (string, error) {
	if req.Migrate != "" || req.TargetHost != "" || len(req.ShutdownVMs) > 0 {
		field := "migrate"
		if req.TargetHost != "" {
			field = "target_host"
		} else if len(req.ShutdownVMs) > 0 {
			field = "shutdown_vms"
		}
		return "", badField(field, "%s goes with status enable, not disable", field)
	}
	st := s.node.FSM().State()
	h := st.Hosts[name]
	if h == nil {
		return "", &fieldErr{code: http.StatusNotFound, field: "host", msg: fmt.Sprintf("host %q not found", name)}
	}
	switch h.Maintenance {
	case cluster.MaintenanceOn, cluster.MaintenanceError, cluster.MaintenanceCancelled:
	case cluster.MaintenanceExiting:
		return h.Operation, nil
	case cluster.MaintenanceEntering:
		return "", conflictErr("status", "host %s is entering maintenance: cancel operation %s first (herd op cancel %s)", name, h.Operation, h.Operation)
	default:
		return "", conflictErr("status", "host %s is not in maintenance", name)
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
	add := func(l api.LeftVM, action string, power cluster.PowerState, field string) *fieldErr {
		vm := st.VMs[l.VM]
		if vm == nil {
			return conflictErr(field, "VM %s no longer exists", l.Name)
		}
		if vm.Power != power {
			return conflictErr(field, "VM %s is %s; %s needs it %s", vm.Name, vm.Power, action, power)
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

// findVM resolves a VM by id, then by name (a name must be unique).
func findVMByRef(st *cluster.State, ref string) (*cluster.VM, *fieldErr) {
	if vm := st.VMs[ref]; vm != nil {
		return vm, nil
	}
	var found []*cluster.VM
	for _, vm := range st.VMs {
		if vm.Name == ref {
			found = append(found, vm)
		}
	}
	switch len(found) {
	case 0:
		if stale := st.StaleOf(ref); len(stale) > 0 {
			c := stale[0]
			return nil, &fieldErr{code: http.StatusConflict, field: "vm", msg: fmt.Sprintf("%s is the stale copy of VM %s (%s) on host %s, left when the host was fenced: its power is unknown, and it is only ever destroyed (when the host returns); act on the VM itself", ref, c.Name, c.VM, c.Host)}
		}
		return nil, &fieldErr{code: http.StatusNotFound, field: "vm", msg: fmt.Sprintf("VM %q not found", ref)}
	case 1:
		return found[0], nil
	}
	ids := make([]string, len(found))
	for i, vm := range found {
		ids[i] = vm.ID
	}
	sort.Strings(ids)
	return nil, badField("vm", "VM name %q is ambiguous: use one of the ids %s", ref, strings.Join(ids, ", "))
}

// vmBusy names the running operation a VM is a step of.
func vmBusy(st *cluster.State, id string) string {
	for _, op := range st.Operations {
		if op.State != cluster.OpRunning {
			continue
		}
		if i := op.Item(id); i >= 0 && !op.Items[i].State.Terminal() {
			return op.ID
		}
	}
	return ""
}

func (s *Server) handleMigrateVM(w http.ResponseWriter, r *http.Request) {
	var req api.MigrateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	st := s.node.FSM().State()
	vm, ferr := findVMByRef(st, r.PathValue("vm"))
	if ferr != nil {
		ferr.write(w)
		return
	}
	if req.TargetHost != "" && st.Hosts[req.TargetHost] == nil {
		writeError(w, http.StatusNotFound, "target_host", "target host %q not found", req.TargetHost)
		return
	}
	if req.TargetHost == vm.Host {
		writeError(w, http.StatusConflict, "target_host", "VM %s is already on %s", vm.Name, vm.Host)
		return
	}
	if req.TargetHost != "" && st.StaleCopies[cluster.StaleKey(req.TargetHost, vm.ID)] != nil {
		writeError(w, http.StatusConflict, "target_host", "host %s still holds a stale copy of VM %s, left when it was fenced: it is destroyed first (the VM would share its id there)", req.TargetHost, vm.Name)
		return
	}
	if src := st.Hosts[vm.Host]; src != nil && (src.Health == cluster.HealthDead || src.Health == cluster.HealthFenced) {
		writeError(w, http.StatusConflict, "vm", "VM %s is on host %s, which is %s: nothing can move it from there; recovery recreates it elsewhere once the host is fenced, or it runs there again when the host returns", vm.Name, vm.Host, src.Health)
		return
	}
	if op := vmBusy(st, vm.ID); op != "" {
		writeError(w, http.StatusConflict, "vm", "VM %s is a step of running operation %s", vm.Name, op)
		return
	}
	if src := st.Hosts[vm.Host]; src != nil && (src.Maintenance == cluster.MaintenanceEntering || src.Maintenance == cluster.MaintenanceOn) && vm.Power != cluster.PoweredOn {
		writeError(w, http.StatusConflict, "vm", "VM %s is %s on host %s in maintenance: VMs there accept only stop, delete and live-migrate", vm.Name, vm.Power, vm.Host)
		return
	}
	if vm.Unmovable != "" {
		writeError(w, http.StatusConflict, "vm", "VM %s cannot migrate: %s", vm.Name, vm.Unmovable)
		return
	}
	l, o := s.ops.Planning(st)
	o.AllowNotAccepting, o.MaxInFlightTo = true, 0
	usage := st.Usage()
	var pl policy.Placement
	if req.TargetHost != "" {
		o.Reserved = nil // an operator's explicit target
		pl = policy.PlaceOn(st, usage, l, vm, req.TargetHost, o)
	} else {
		o.AllowNotAccepting = false
		pl = policy.Place(st, usage, l, vm, o)
	}
	if pl.Host == "" {
		writeError(w, http.StatusConflict, "target_host", "VM %s cannot go there: %s", vm.Name, pl.Explain())
		return
	}
	action := cluster.ActionLiveMigrate
	if vm.Power != cluster.PoweredOn {
		action = cluster.ActionOfflineMigrate
	}
	plan := api.MigratePlan{VM: vm.Name, Action: string(action), From: vm.Host, Target: pl.Host, Chosen: req.TargetHost == ""}
	if req.DryRun {
		writeJSON(w, http.StatusOK, plan)
		return
	}
	// A host the operator named is the only target; one Herd chose is
	// planned, and a retry may go elsewhere (the planned host may die).
	item := cluster.OpItem{VM: vm.ID, Name: vm.Name, Action: action, From: vm.Host, MemoryBytes: vm.MemoryBytes, Priority: vm.Priority}
	msg := fmt.Sprintf("%s VM %s from %s to %s requested", action, vm.Name, vm.Host, pl.Host)
	if req.TargetHost == "" {
		item.Planned = pl.Host
		msg = fmt.Sprintf("%s VM %s from %s requested; Herd chose %s (another host if that fails)", action, vm.Name, vm.Host, pl.Host)
	}
	op := cluster.Operation{ID: newOpID(), Kind: cluster.OpMigrate, Host: vm.Host, TargetHost: req.TargetHost, Actor: actor(r), Created: time.Now().UTC(),
		Items: []cluster.OpItem{item}}
	ev := cluster.NewEvent("vm.migrate_requested", op.Actor, vm.Host, vm.ID, msg)
	ev.Operation = op.ID
	if _, err := s.node.Apply(r.Context(), &cluster.StartOperation{Op: op, Event: ev}); err != nil {
		writeApplyError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, api.MigrateResult{OperationRef: api.OperationRef{Operation: op.ID}, MigratePlan: plan})
}

func (s *Server) handleOperations(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	host, state := q.Get("host"), q.Get("state")
	if state != "" && !slices.Contains([]string{"running", "succeeded", "failed", "cancelled"}, state) {
		writeError(w, http.StatusBadRequest, "state", "state %q is not one of running, succeeded, failed, cancelled", state)
		return
	}
	st := s.node.FSM().State()
	out := api.Operations{Operations: []api.Operation{}}
	for _, op := range st.SortedOperations() {
		if (host == "" || op.Host == host || op.TargetHost == host) && (state == "" || string(op.State) == state) {
			out.Operations = append(out.Operations, api.NewOperation(op))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleOperation(w http.ResponseWriter, r *http.Request) {
	op := s.node.FSM().Operation(r.PathValue("id"))
	if op == nil {
		writeError(w, http.StatusNotFound, "operation", "operation %q not found", r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusOK, api.NewOperation(op))
}

func (s *Server) handleCancelOperation(w http.ResponseWriter, r *http.Request) {
	// Cancelling what is cancelled already (or stopping) answers as the
	// first cancel did, and logs nothing more.
	if op := s.node.FSM().Operation(r.PathValue("id")); op != nil && (op.Cancelled || op.State == cluster.OpCancelled) {
		var empty struct{}
		if r.ContentLength != 0 && !decodeBody(w, r, &empty) {
			return
		}
		writeJSON(w, http.StatusOK, api.NewOperation(op))
		return
	}
	s.operationCommand(w, r, func(id string, ev cluster.Event) cluster.Command {
		ev.Type, ev.Message = "operation.cancelled", "operation "+id+" cancelled: steps in flight finish, nothing new starts"
		return &cluster.CancelOperation{Op: id, Time: ev.Time, Event: ev}
	})
}

func (s *Server) handleRetryOperation(w http.ResponseWriter, r *http.Request) {
	s.operationCommand(w, r, func(id string, ev cluster.Event) cluster.Command {
		ev.Type, ev.Message = "operation.retried", "operation "+id+" retried: failed and cancelled steps start over"
		return &cluster.RetryOperation{Op: id, Time: ev.Time, Event: ev}
	})
}

func (s *Server) operationCommand(w http.ResponseWriter, r *http.Request, build func(id string, ev cluster.Event) cluster.Command) {
	var empty struct{}
	if r.ContentLength != 0 && !decodeBody(w, r, &empty) {
		return
	}
	id := r.PathValue("id")
	op := s.node.FSM().Operation(id)
	if op == nil {
		writeError(w, http.StatusNotFound, "operation", "operation %q not found", id)
		return
	}
	ev := cluster.NewEvent("", actor(r), op.Host, "", "")
	ev.Operation = id
	if _, err := s.node.Apply(r.Context(), build(id, ev)); err != nil {
		writeApplyError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.NewOperation(s.node.FSM().Operation(id)))
}

// failoverBlocker says why closing host would leave the cluster unable to
// absorb the host failures the policy demands, or "".
func (s *Server) failoverBlocker(st *cluster.State, host string) string {
	doc := s.Policy()
	min := doc.Failover.MinHostFailures
	if min <= 0 {
		return ""
	}
	after := policy.FailoverAfterMaintenance(st, host, s.placementOptions(doc, st, 0))
	if after >= min {
		return ""
	}
	return fmt.Sprintf("failover capacity would drop to %d host(s), below the policy minimum of %d (failover.min_host_failures)", after, min)
}
