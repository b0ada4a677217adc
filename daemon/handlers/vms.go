package handlers

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/httpapi"
	"github.com/herd-project/herd/daemon/wire"
	"github.com/herd-project/herd/policy/placement"
)

// VMs lists the VMs, or one host's, with their effective priority and
// groups (GET /v1/vms).
func (a *API) VMs(w http.ResponseWriter, r *http.Request) (any, error) {
	host := r.URL.Query().Get("host")
	st := a.State.State()
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
	comp := a.Compiled(a.Policy(), st)
	for _, vm := range vms {
		out.VMs = append(out.VMs, vmView(comp, vm))
	}
	return out, nil
}

// MigrateVM moves a VM to the host named or to one Herd chooses (POST
// /v1/vms/{vm}/migrate); dry_run only plans it.
func (a *API) MigrateVM(w http.ResponseWriter, r *http.Request) (any, error) {
	var req api.MigrateRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		return nil, err
	}
	st := a.State.State()
	vm, ferr := findVMByRef(st, r.PathValue("vm"))
	if ferr != nil {
		return nil, ferr
	}
	if req.TargetHost != "" && st.Hosts[req.TargetHost] == nil {
		return nil, httpapi.Errorf(http.StatusNotFound, "target_host", "target host %q not found", req.TargetHost)
	}
	if req.TargetHost == vm.Host {
		return nil, httpapi.Errorf(http.StatusConflict, "target_host", "VM %s is already on %s", vm.Name, vm.Host)
	}
	if req.TargetHost != "" && st.StaleCopies[cluster.StaleKey(req.TargetHost, vm.ID)] != nil {
		return nil, httpapi.Errorf(http.StatusConflict, "target_host", "host %s still holds a stale copy of VM %s, left when it was fenced: it is destroyed first (the VM would share its id there)", req.TargetHost, vm.Name)
	}
	if src := st.Hosts[vm.Host]; src != nil && (src.Health == cluster.HealthDead || src.Health == cluster.HealthFenced) {
		return nil, httpapi.Errorf(http.StatusConflict, "vm", "VM %s is on host %s, which is %s: nothing can move it from there; recovery recreates it elsewhere once the host is fenced, or it runs there again when the host returns", vm.Name, vm.Host, src.Health)
	}
	if op := a.Busy(st, vm.ID); op != "" {
		return nil, httpapi.Errorf(http.StatusConflict, "vm", "VM %s is a step of running operation %s", vm.Name, op)
	}
	if src := st.Hosts[vm.Host]; src != nil && (src.Maintenance == cluster.MaintenanceEntering || src.Maintenance == cluster.MaintenanceOn) && vm.Power != cluster.PoweredOn {
		return nil, httpapi.Errorf(http.StatusConflict, "vm", "VM %s is %s on host %s in maintenance: VMs there accept only stop, delete and live-migrate", vm.Name, vm.Power, vm.Host)
	}
	if vm.Unmovable != "" {
		return nil, httpapi.Errorf(http.StatusConflict, "vm", "VM %s cannot migrate: %s", vm.Name, vm.Unmovable)
	}
	l, o := a.Ledger.Planning(st)
	o.AllowNotAccepting, o.MaxInFlightTo = true, 0
	usage := st.Usage()
	var pl placement.Placement
	if req.TargetHost != "" {
		o.Reserved = nil // an operator's explicit target
		pl = placement.PlaceOn(st, usage, l, vm, req.TargetHost, o)
	} else {
		o.AllowNotAccepting = false
		pl = placement.Place(st, usage, l, vm, o)
	}
	if pl.Host == "" {
		return nil, httpapi.Errorf(http.StatusConflict, "target_host", "VM %s cannot go there: %s", vm.Name, pl.Explain())
	}
	action := cluster.ActionLiveMigrate
	if vm.Power != cluster.PoweredOn {
		action = cluster.ActionOfflineMigrate
	}
	plan := api.MigratePlan{VM: vm.Name, Action: string(action), From: vm.Host, Target: pl.Host, Chosen: req.TargetHost == ""}
	if req.DryRun {
		return plan, nil
	}
	// A host the operator named is the only target; one Herd chose is
	// planned, and a retry may go elsewhere (the planned host may die).
	item := cluster.OpItem{VM: vm.ID, Name: vm.Name, Action: action, From: vm.Host, MemoryBytes: vm.MemoryBytes, Priority: vm.Priority}
	msg := fmt.Sprintf("%s VM %s from %s to %s requested", action, vm.Name, vm.Host, pl.Host)
	if req.TargetHost == "" {
		item.Planned = pl.Host
		msg = fmt.Sprintf("%s VM %s from %s requested; Herd chose %s (another host if that fails)", action, vm.Name, vm.Host, pl.Host)
	}
	op := cluster.Operation{ID: a.NewOpID(), Kind: cluster.OpMigrate, Host: vm.Host, TargetHost: req.TargetHost, Actor: httpapi.Actor(r), Created: time.Now().UTC(),
		Items: []cluster.OpItem{item}}
	ev := cluster.NewEvent("vm.migrate_requested", op.Actor, vm.Host, vm.ID, msg)
	ev.Operation = op.ID
	if _, err := a.Raft.Apply(r.Context(), &cluster.StartOperation{Op: op, Event: ev}); err != nil {
		return nil, httpapi.ApplyFailed(err)
	}
	return httpapi.Accepted(api.MigrateResult{OperationRef: api.OperationRef{Operation: op.ID}, MigratePlan: plan}), nil
}

// findVM resolves a VM by id, then by name (a name must be unique).
func findVMByRef(st *cluster.State, ref string) (*cluster.VM, *httpapi.Error) {
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
			return nil, &httpapi.Error{Code: http.StatusConflict, Field: "vm", Msg: fmt.Sprintf("%s is the stale copy of VM %s (%s) on host %s, left when the host was fenced: its power is unknown, and it is only ever destroyed (when the host returns); act on the VM itself", ref, c.Name, c.VM, c.Host)}
		}
		return nil, &httpapi.Error{Code: http.StatusNotFound, Field: "vm", Msg: fmt.Sprintf("VM %q not found", ref)}
	case 1:
		return found[0], nil
	}
	ids := make([]string, len(found))
	for i, vm := range found {
		ids[i] = vm.ID
	}
	sort.Strings(ids)
	return nil, httpapi.BadField("vm", "VM name %q is ambiguous: use one of the ids %s", ref, strings.Join(ids, ", "))
}

// vmView is vm as the API shows it: its effective priority (its policy
// groups' included) and its groups.
func vmView(comp *placement.Compiled, vm *cluster.VM) api.VMView {
	v := wire.VM(vm)
	if comp != nil {
		v.Priority, v.Groups = comp.Priority(vm), comp.GroupsOf(vm)
	}
	return v
}
