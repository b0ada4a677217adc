// Package maintenance enters and leaves maintenance: it checks a request,
// prechecks the evacuation against the ledger of moves in flight and the
// failover capacity, and records the evacuation or exit as an operation
// that the operations controller then runs. The API's handlers, the
// rollout controller, the alert webhook and the health controller (for a
// degraded host) all come in here.
package maintenance

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/controller"
	"github.com/herd-project/herd/daemon/httpapi"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/failover"
	"github.com/herd-project/herd/policy/placement"
	"github.com/herd-project/herd/policy/plan"
)

// Ledger is what a precheck plans with (the operations controller).
type Ledger interface {
	// Planning is the ledger as it will be and the automatic moves'
	// placement options; both are copies.
	Planning(st *cluster.State) (*placement.Ledger, placement.Options)
}

// Deps are what entering and leaving maintenance work with.
type Deps struct {
	State  controller.State
	Raft   controller.Applier
	Ledger Ledger
	// Policy is the policy in force.
	Policy func() *policy.Document
	// Options are the placement options the policy gives for st.
	Options func(doc *policy.Document, st *cluster.State, perTarget int) placement.Options
	// NewOpID names a new operation.
	NewOpID func() string
}

// Service enters and leaves maintenance.
type Service struct{ d Deps }

// New builds the service.
func New(d Deps) *Service { return &Service{d: d} }

// evacuationRequest checks an enable body and turns it into the planner's
// request.
func evacuationRequest(st *cluster.State, host string, req api.MaintenanceRequest) (placement.EvacuationRequest, *httpapi.Error) {
	for field, v := range map[string][]string{"poweron_vms": req.PowerOnVMs, "live_migrate_back_vms": req.LiveMigrateBackVMs,
		"offline_migrate_back_vms": req.OfflineMigrateBackVMs} {
		if len(v) > 0 {
			return placement.EvacuationRequest{}, httpapi.BadField(field, "%s goes with status disable, not enable", field)
		}
	}
	mode := placement.MigrateMode(req.Migrate)
	if mode == "" {
		mode = placement.MigrateNone
	}
	if !mode.Valid() {
		return placement.EvacuationRequest{}, httpapi.BadField("migrate", "migrate %q is not one of none, active-only, all", req.Migrate)
	}
	er := placement.EvacuationRequest{Host: host, Migrate: mode, TargetHost: req.TargetHost, ShutdownVMs: req.ShutdownVMs}
	if err := er.Validate(); err != nil {
		if fe, ok := err.(*policy.FieldError); ok {
			return er, httpapi.BadField(fe.Field, "%s", fe.Msg)
		}
		return er, httpapi.BadField("", "%v", err)
	}
	if req.TargetHost != "" && st.Hosts[req.TargetHost] == nil {
		return er, &httpapi.Error{Code: http.StatusNotFound, Field: "target_host", Msg: fmt.Sprintf("target host %q not found", req.TargetHost)}
	}
	if req.TargetHost != "" && mode == placement.MigrateNone {
		return er, httpapi.BadField("target_host", "target_host needs migrate active-only or all")
	}
	return er, nil
}

func toAPIBlockers(bs []placement.Blocker) []api.Blocker {
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

func (m *Service) precheck(st *cluster.State, er placement.EvacuationRequest) placement.Precheck {
	l, o := m.d.Ledger.Planning(st)
	if er.TargetHost != "" {
		o.Reserved = nil // an operator's explicit target
	}
	return placement.PrecheckEvacuation(st, l, er, o)
}

// Precheck is what entering maintenance as req asks would do on host now:
// the moves and shutdowns, and what blocks it (what only force overrides
// included).
func (m *Service) Precheck(name string, req api.MaintenanceRequest) (api.Precheck, error) {
	st := m.d.State.State()
	h, er, err := enableTarget(st, name, req)
	if err != nil {
		return api.Precheck{}, err
	}
	pc := m.precheck(st, er)
	if b := m.failoverBlocker(st, name); b != "" {
		pc.Blockers = append(pc.Blockers, placement.Blocker{Reason: b + "; set force to enter anyway"})
	}
	out := api.Precheck{Host: name, LiveMigrateVMs: toAPIItems(pc.LiveMigrate), OfflineMigrateVMs: toAPIItems(pc.OfflineMigrate),
		ShutdownVMs: toAPIItems(pc.Shutdown), StayVMs: toAPIItems(pc.Stay), Blockers: toAPIBlockers(pc.Blockers)}
	if h.Maintenance != cluster.MaintenanceOff {
		out.Blockers = append(out.Blockers, api.Blocker{Reason: fmt.Sprintf("host is already in maintenance (%s)", h.Maintenance)})
	}
	return out, nil
}

func toAPIItems(items []placement.Item) []api.PrecheckItem {
	out := make([]api.PrecheckItem, 0, len(items))
	for _, it := range items {
		out = append(out, api.PrecheckItem{VM: it.VM, Name: it.Name, Action: it.Action, Target: it.Target, MemoryBytes: it.MemoryBytes, Reason: it.Reason})
	}
	return out
}

// enableTarget finds the host of an enable (or precheck) request and
// checks the request.
func enableTarget(st *cluster.State, name string, req api.MaintenanceRequest) (*cluster.Host, placement.EvacuationRequest, error) {
	h := st.Hosts[name]
	if h == nil {
		return nil, placement.EvacuationRequest{}, httpapi.NotFound("host", "host %q not found", name)
	}
	er, ferr := evacuationRequest(st, name, req)
	if ferr != nil {
		return nil, er, ferr
	}
	return h, er, nil
}

// Enter starts host name's evacuation as req asks (an API
// request, or a rollout's step); a repeated request gets the operation
// under way. id names the operation ("": a new id); why, when set, says
// what asked for it. Errors are *httpapi.Error (nothing changed) or the raft
// write's.
func (m *Service) Enter(ctx context.Context, name string, req api.MaintenanceRequest, who, id, why string) (string, error) {
	st := m.d.State.State()
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
		if same := m.sameEnable(name, er); same != "" {
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
	pc := m.precheck(st, er)
	if !pc.OK() {
		fe := httpapi.Conflict("status", "host %s cannot enter maintenance", name)
		fe.Blockers = toAPIBlockers(pc.Blockers)
		return "", fe
	}
	if b := m.failoverBlocker(st, name); b != "" && !req.Force {
		fe := httpapi.Conflict("force", "host %s cannot enter maintenance", name)
		fe.Blockers = []api.Blocker{{Reason: b + "; set force to enter anyway"}}
		return "", fe
	}
	id, err := m.startEvacuation(ctx, st, name, er, pc, who, id, why)
	var ae *cluster.ApplyError
	if errors.As(err, &ae) && ae.Code == http.StatusConflict {
		// An identical request committed first (concurrent duplicates):
		// it asked for what is now under way, so it gets the same answer.
		if same := m.sameEnable(name, er); same != "" {
			return same, nil
		}
	}
	return id, err
}

// sameEnable returns the operation already taking host into maintenance
// the way er asks, or "".
func (m *Service) sameEnable(host string, er placement.EvacuationRequest) string {
	var id string
	m.d.State.Read(func(st *cluster.State) {
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
func (m *Service) startEvacuation(ctx context.Context, st *cluster.State, name string, er placement.EvacuationRequest, pc placement.Precheck, who, id, why string) (string, error) {
	if id == "" {
		id = m.d.NewOpID()
	}
	op := cluster.Operation{ID: id, Kind: cluster.OpEvacuate, Host: name, Migrate: string(er.Migrate), TargetHost: er.TargetHost,
		Actor: who, Created: time.Now().UTC(), MaxAttempts: m.d.Policy().Maintenance.Attempts}
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
	if _, err := m.d.Raft.Apply(ctx, &cluster.StartOperation{Op: op, Event: ev}); err != nil {
		return "", err
	}
	return op.ID, nil
}

// EvacuateDegraded moves the running VMs off a host whose hardware is
// failing (the policy's degraded_query), through maintenance, before it
// dies. A host that is not AVAILABLE, alive and out of maintenance is left
// alone; blockers are recorded as an event.
func (m *Service) EvacuateDegraded(ctx context.Context, name, why string) error {
	_, err := m.Evacuate(ctx, name, why, Auto{Who: "health", BlockedType: "health.degraded", Seems: "looks degraded", Cause: "hardware degraded: "})
	return err
}

// Auto says who starts an automatic evacuation (Evacuate) and how it is
// told.
type Auto struct {
	Who         string
	BlockedType string // the event type of a blocked evacuation
	Seems       string // "host NAME <Seems> (why) but cannot be evacuated"
	Cause       string // put before why in the evacuation's event
	// FromNotAccepting also evacuates a NOT_ACCEPTING host (an alert's
	// escalation after a not-accepting one).
	FromNotAccepting bool
}

// Evacuate is the evacuation Herd starts by itself (degraded_query, an
// alert): maintenance with live migration of the running VMs, only of a
// host that is AVAILABLE (or NOT_ACCEPTING, when a says so), alive and
// out of maintenance. Blockers are recorded as an event; the
// evacuation's event says a.Cause+why. It says what it did.
func (m *Service) Evacuate(ctx context.Context, name, why string, a Auto) (string, error) {
	st := m.d.State.State()
	h := st.Hosts[name]
	switch {
	case h == nil:
		return "unchanged: host not found", nil
	case h.Maintenance != cluster.MaintenanceOff:
		return fmt.Sprintf("unchanged: host is in maintenance (%s, operation %s)", h.Maintenance, h.Operation), nil
	case h.Admin != cluster.Available && !(a.FromNotAccepting && h.Admin == cluster.NotAccepting):
		return fmt.Sprintf("unchanged: host is %s", h.Admin), nil
	case h.Health != cluster.HealthAlive:
		return fmt.Sprintf("unchanged: host is %s", h.Health), nil
	}
	er, ferr := evacuationRequest(st, name, api.MaintenanceRequest{Status: "enable", Migrate: "active-only"})
	if ferr != nil {
		return "", errors.New(ferr.Msg)
	}
	pc := m.precheck(st, er)
	if !pc.OK() {
		var reasons []string
		for _, b := range pc.Blockers {
			reasons = append(reasons, b.Reason)
		}
		msg := fmt.Sprintf("host %s %s (%s) but cannot be evacuated: %s", name, a.Seems, why, strings.Join(reasons, "; "))
		_, err := m.d.Raft.Apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{cluster.NewEvent(a.BlockedType, a.Who, name, "", msg)}})
		return "blocked: " + strings.Join(reasons, "; "), err
	}
	id, err := m.startEvacuation(ctx, st, name, er, pc, a.Who, "", a.Cause+why)
	if err != nil {
		return "", err
	}
	return "evacuating: operation " + id, nil
}

// sameEvacuation reports whether a repeated enable asks for what op does.
func sameEvacuation(st *cluster.State, op *cluster.Operation, er placement.EvacuationRequest) bool {
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

// ExitPrecheck lists what left host for its maintenance, where each VM is
// now, and whether the policy moves them back on exit.
func (m *Service) ExitPrecheck(name string) (api.ExitPrecheck, error) {
	st := m.d.State.State()
	if st.Hosts[name] == nil {
		return api.ExitPrecheck{}, httpapi.Errorf(http.StatusNotFound, "host", "host %q not found", name)
	}
	out := leftVMs(st, name)
	out.MigrateBackOnExit = m.d.Policy().Maintenance.MigrateBackOnExit
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

// Exit starts host name's exit from maintenance as req asks (an
// API request, or a rollout's step); a host already exiting gives its
// operation. id names the operation ("": a new id). Errors are *httpapi.Error
// (nothing changed) or the raft write's.
func (m *Service) Exit(ctx context.Context, name string, req api.MaintenanceRequest, who, id string) (string, error) {
	if req.Migrate != "" || req.TargetHost != "" || len(req.ShutdownVMs) > 0 {
		field := "migrate"
		if req.TargetHost != "" {
			field = "target_host"
		} else if len(req.ShutdownVMs) > 0 {
			field = "shutdown_vms"
		}
		return "", httpapi.BadField(field, "%s goes with status enable, not disable", field)
	}
	st := m.d.State.State()
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
	if m.d.Policy().Maintenance.MigrateBackOnExit {
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
		id = m.d.NewOpID()
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
	if _, err := m.d.Raft.Apply(ctx, &cluster.StartOperation{Op: op, Event: ev}); err != nil {
		return "", err
	}
	return op.ID, nil
}

// failoverBlocker says why closing host would leave the cluster unable to
// absorb the host failures the policy demands, or "".
func (m *Service) failoverBlocker(st *cluster.State, host string) string {
	doc := m.d.Policy()
	min := doc.Failover.MinHostFailures
	if min <= 0 {
		return ""
	}
	after := failover.AfterMaintenance(st, host, m.d.Options(doc, st, 0))
	if after >= min {
		return ""
	}
	return fmt.Sprintf("failover capacity would drop to %d host(s), below the policy minimum of %d (failover.min_host_failures)", after, min)
}

// Rollout enters and leaves maintenance for the rollout controller
// (rollout.Maintenance) through the same functions as the API.
type Rollout struct{ s *Service }

// Rollout is m as the rollout controller uses it.
func (m *Service) Rollout() Rollout { return Rollout{m} }

// CanEnter says why host cannot enter maintenance now (an error), or what
// only force overrides (a failover blocker), or "".

func (r Rollout) CanEnter(st *cluster.State, host, migrate string, force bool) (string, error) {
	er, ferr := evacuationRequest(st, host, api.MaintenanceRequest{Status: "enable", Migrate: migrate})
	if ferr != nil {
		return "", ferr
	}
	if pc := r.s.precheck(st, er); !pc.OK() {
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
	if b := r.s.failoverBlocker(st, host); b != "" && !force {
		return b, nil
	}
	return "", nil
}

// Enter starts host's evacuation for a rollout step.
func (r Rollout) Enter(ctx context.Context, host, migrate string, force bool, id, why string) error {
	_, err := r.s.Enter(ctx, host, api.MaintenanceRequest{Status: "enable", Migrate: migrate, Force: force}, "rollout", id, why)
	return err
}

// Exit starts host's exit for a rollout step; moveBack brings back the VMs
// that left it, in the power state they had.
func (r Rollout) Exit(ctx context.Context, host string, moveBack bool, id string) error {
	req := api.MaintenanceRequest{Status: "disable"}
	if moveBack {
		left := leftVMs(r.s.d.State.State(), host)
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
	_, err := r.s.Exit(ctx, host, req, "rollout", id)
	return err
}
