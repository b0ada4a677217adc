package placement

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
)

// MigrateMode says which VMs leave a host entering maintenance.
type MigrateMode string

const (
	// MigrateNone moves nothing: the host is only closed to new VMs.
	MigrateNone MigrateMode = "none"
	// MigrateActiveOnly live-migrates running VMs; stopped ones stay.
	MigrateActiveOnly MigrateMode = "active-only"
	// MigrateAll also offline-migrates stopped and suspended VMs.
	MigrateAll MigrateMode = "all"
)

// Valid reports whether m is one of the three modes.
func (m MigrateMode) Valid() bool {
	switch m {
	case MigrateNone, MigrateActiveOnly, MigrateAll:
		return true
	}
	return false
}

// EvacuationRequest asks to put a host into maintenance.
type EvacuationRequest struct {
	Host string `json:"host"`
	// Migrate is the mode; empty means none.
	Migrate MigrateMode `json:"migrate"`
	// TargetHost, when set, receives every VM that moves.
	TargetHost string `json:"target_host,omitempty"`
	// ShutdownVMs lists VMs (ids or names) to shut down instead of moving.
	ShutdownVMs []string `json:"shutdown_vms,omitempty"`
}

// Validate checks the request's own fields, naming the one at fault. Whether
// the hosts and VMs exist is for PrecheckEvacuation.
func (r EvacuationRequest) Validate() error {
	if r.Host == "" {
		return &policy.FieldError{Field: "host", Msg: "must not be empty"}
	}
	if r.Migrate != "" && !r.Migrate.Valid() {
		return &policy.FieldError{Field: "migrate", Msg: fmt.Sprintf("must be none, active-only or all, got %q", r.Migrate)}
	}
	if r.TargetHost == r.Host {
		return &policy.FieldError{Field: "target_host", Msg: fmt.Sprintf("%q is the host being evacuated", r.TargetHost)}
	}
	return nil
}

// mode returns the request's mode, none when empty.
func (r EvacuationRequest) mode() MigrateMode {
	if r.Migrate == "" {
		return MigrateNone
	}
	return r.Migrate
}

// Order sorts vms in place into evacuation order: largest memory first;
// equal memory, higher priority first; then by name, then id.
func Order(vms []*cluster.VM) {
	slices.SortFunc(vms, CompareOrder)
}

// CompareOrder is the comparison Order sorts by.
func CompareOrder(a, b *cluster.VM) int {
	if c := cmp.Compare(b.MemoryBytes, a.MemoryBytes); c != 0 {
		return c
	}
	if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
		return c
	}
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// What happens to a VM of a host entering maintenance.
const (
	ActionLiveMigrate    = "live-migrate"
	ActionOfflineMigrate = "offline-migrate"
	ActionShutdown       = "shutdown"
	ActionStay           = "stay"
)

// Item is one VM in a precheck.
type Item struct {
	VM          string `json:"vm"` // id
	Name        string `json:"name"`
	Action      string `json:"action"`
	Target      string `json:"target,omitempty"` // planned at precheck time; chosen again when it moves
	MemoryBytes int64  `json:"memory_bytes"`
	Reason      string `json:"reason,omitempty"`
}

// Blocker is why an evacuation cannot start. VM is empty for the host-level
// ones.
type Blocker struct {
	VM     string `json:"vm,omitempty"` // id
	Name   string `json:"name,omitempty"`
	Reason string `json:"reason"`
}

// Precheck says what an evacuation would do. Every VM of the host is in
// exactly one of the lists or among the blockers, in evacuation order.
type Precheck struct {
	LiveMigrate    []Item    `json:"live_migrate_vms"`
	OfflineMigrate []Item    `json:"offline_migrate_vms"`
	Shutdown       []Item    `json:"shutdown_vms"`
	Stay           []Item    `json:"stay_vms"` // left on the host as they are
	Blockers       []Blocker `json:"blockers"`
}

// OK reports whether nothing blocks the evacuation.
func (p *Precheck) OK() bool { return len(p.Blockers) == 0 }

func (p *Precheck) block(vm *cluster.VM, format string, args ...any) {
	b := Blocker{Reason: fmt.Sprintf(format, args...)}
	if vm != nil {
		b.VM, b.Name = vm.ID, vm.Name
	}
	p.Blockers = append(p.Blockers, b)
}

// NotOperating says why a host's hypervisor cannot be evacuated, or "".
func NotOperating(h *cluster.Host) string {
	if h.Connection != cluster.Connected || h.Health == cluster.HealthDead || h.Health == cluster.HealthFenced {
		return fmt.Sprintf("host hypervisor not operating: connection %s, health %s; it needs recovery, not maintenance",
			h.Connection, h.Health)
	}
	return ""
}

// Decide returns what the request does with vm, and why when it stays or is
// shut down. An unknown power state blocks ("") unless nothing moves.
func Decide(vm *cluster.VM, mode MigrateMode, shutdown bool) (string, string) {
	if shutdown {
		if vm.Power == cluster.PoweredOff {
			return ActionStay, "listed in shutdown_vms; already stopped"
		}
		return ActionShutdown, "listed in shutdown_vms"
	}
	if mode == MigrateNone {
		return ActionStay, "migrate is none"
	}
	switch vm.Power {
	case cluster.PoweredOn:
		return ActionLiveMigrate, ""
	case cluster.PoweredOff, cluster.Suspended:
		if mode == MigrateAll {
			return ActionOfflineMigrate, ""
		}
		return ActionStay, fmt.Sprintf("%s; migrate is %s", vm.Power, mode)
	}
	return "", ""
}

// PrecheckEvacuation plans the evacuation of req.Host: what each VM does, in
// Order, the target each moving VM would get now, and the blockers. Targets
// are planned on a copy of the usage and of the ledger l (nil for none),
// reserving as it goes, so the plan reflects cumulative capacity and the
// moves other evacuations already have in flight. o.MaxInFlightTo is
// ignored: the precheck plans capacity, not timing.
func PrecheckEvacuation(s *cluster.State, l *Ledger, req EvacuationRequest, o Options) Precheck {
	// Empty lists, not nil ones, so that the API answers [] rather than null.
	p := Precheck{LiveMigrate: []Item{}, OfflineMigrate: []Item{}, Shutdown: []Item{}, Stay: []Item{}, Blockers: []Blocker{}}
	src := s.Hosts[req.Host]
	if src == nil {
		p.block(nil, "unknown host %q", req.Host)
		return p
	}
	mode := req.mode()
	if !mode.Valid() {
		p.block(nil, "migrate: must be none, active-only or all, got %q", req.Migrate)
		return p
	}
	if why := NotOperating(src); why != "" {
		p.block(nil, "%s", why)
	}
	vms := s.VMsOn(req.Host)
	Order(vms)
	shutdown := shutdownSet(&p, vms, req)

	o.MaxInFlightTo = 0
	var f *fleet
	targetOK := true
	usage := s.Usage()
	if req.TargetHost != "" {
		o.AllowNotAccepting, o.Exclude = true, nil
		f = newFleet(s, usage, l, src, req.TargetHost, o)
		if len(f.cands) == 0 {
			targetOK = false
			if th := s.Hosts[req.TargetHost]; th == nil {
				p.block(nil, "target_host %q: unknown host", req.TargetHost)
			} else {
				p.block(nil, "target_host %q cannot take VMs: %s", req.TargetHost,
					staticDetail(th, src, staticReason(th, src, &o)))
			}
		}
	} else {
		f = newFleet(s, usage, l, src, "", o)
	}

	for _, vm := range vms {
		action, why := Decide(vm, mode, shutdown[vm.ID])
		it := Item{VM: vm.ID, Name: vm.Name, Action: action, MemoryBytes: vm.MemoryBytes, Reason: why}
		switch action {
		case ActionStay:
			p.Stay = append(p.Stay, it)
			continue
		case ActionShutdown:
			p.Shutdown = append(p.Shutdown, it)
			continue
		case "":
			p.block(vm, "power state %q unknown; cannot decide how to move it", vm.Power)
			continue
		}
		if vm.Unmovable != "" {
			p.block(vm, "cannot migrate: %s; list it in shutdown_vms", vm.Unmovable)
			continue
		}
		if m, ok := l.Move(vm.ID); ok && m.From == req.Host {
			it.Target = m.To // already moving, and its reservation is in l
		} else if !targetOK {
			p.block(vm, "target_host %q cannot take VMs", req.TargetHost)
			continue
		} else if why := affinityInFlight(o.Policy, s, l, vm, req.Host); why != "" {
			p.block(vm, "%s", why)
			continue
		} else {
			i, pl := f.pick(vm)
			if i < 0 {
				p.block(vm, "%s", placeFailure(f, req, MemoryNeed(vm), pl))
				continue
			}
			f.take(i, vm)
			it.Target = pl.Host
		}
		if action == ActionLiveMigrate {
			p.LiveMigrate = append(p.LiveMigrate, it)
		} else {
			p.OfflineMigrate = append(p.OfflineMigrate, it)
		}
	}
	return p
}

// placeFailure says why a VM needing need bytes found no target.
func placeFailure(f *fleet, req EvacuationRequest, need int64, pl Placement) string {
	if req.TargetHost != "" && len(f.cands) == 1 && pl.Rejections[ReasonInsufficientMemory] > 0 {
		free := f.cands[0].free
		return fmt.Sprintf("does not fit on target host %s: needs %s, %s free (short by %s)",
			req.TargetHost, formatBytes(need), formatBytes(max(free, 0)), formatBytes(need-max(free, 0)))
	}
	if pl.Rejections[ReasonInsufficientMemory] > 0 {
		return "not enough capacity: " + pl.Explain()
	}
	return pl.Explain()
}

// shutdownSet resolves req.ShutdownVMs (ids or names) to the ids of vms,
// blocking on names that are not VMs of the host.
func shutdownSet(p *Precheck, vms []*cluster.VM, req EvacuationRequest) map[string]bool {
	if len(req.ShutdownVMs) == 0 {
		return nil
	}
	matched := make(map[string]bool, len(req.ShutdownVMs))
	for _, n := range req.ShutdownVMs {
		matched[n] = false
	}
	set := make(map[string]bool, len(req.ShutdownVMs))
	for _, vm := range vms {
		_, byID := matched[vm.ID]
		_, byName := matched[vm.Name]
		if byID {
			matched[vm.ID] = true
		}
		if byName {
			matched[vm.Name] = true
		}
		if byID || byName {
			set[vm.ID] = true
		}
	}
	for _, n := range req.ShutdownVMs {
		if !matched[n] {
			p.block(nil, "shutdown_vms: %q is not a VM on host %s", n, req.Host)
			matched[n] = true // report each name once
		}
	}
	return set
}

// NextTarget chooses the target of one VM as it is about to migrate:
// req.TargetHost when set (still checked for room), otherwise the best host
// by Place with the previously tried targets excluded. When excluding them
// leaves nothing, it falls back to allowing them again: a retry goes
// "preferably elsewhere". A Transient placement means wait for a slot.
func NextTarget(s *cluster.State, usage map[string]cluster.HostUsage, l *Ledger, vm *cluster.VM,
	req EvacuationRequest, tried []string, o Options) Placement {
	if req.TargetHost != "" {
		o.AllowNotAccepting, o.Exclude = true, nil
		return PlaceOn(s, usage, l, vm, req.TargetHost, o)
	}
	if len(tried) == 0 {
		return Place(s, usage, l, vm, o)
	}
	ex := make(map[string]bool, len(o.Exclude)+len(tried))
	for h, v := range o.Exclude {
		ex[h] = v
	}
	for _, h := range tried {
		ex[h] = true
	}
	elsewhere := o
	elsewhere.Exclude = ex
	p := Place(s, usage, l, vm, elsewhere)
	if p.Host != "" {
		return p
	}
	again := Place(s, usage, l, vm, o)
	if again.Host == "" && p.Transient() {
		return p
	}
	return again
}
