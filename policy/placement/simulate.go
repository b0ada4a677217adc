package placement

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/herd-project/herd/cluster"
)

// flight is one simulated migration in progress.
type flight struct {
	end  time.Duration
	vm   *cluster.VM
	to   string
	need int64
}

// SimulateEvacuation runs a deterministic discrete-event simulation of the
// evacuation of req.Host with the functions the controller uses: VMs in
// Order, targets from NextTarget at the moment each move starts, the moves
// reserved in a Ledger and gated by limits. duration gives each VM's
// migration time. The dispatching rule: whenever a slot frees, start the next
// VM in order whose target the limits allow. Shutdowns take no migration
// slot and are not simulated.
//
// It returns the makespan and a lower bound on any schedule: the sum of the
// migration times divided by the usable concurrency, min(PerSource, Cluster,
// PerTarget × feasible targets), and at least the longest single migration.
// It fails when the precheck has blockers or a VM finds no target.
func SimulateEvacuation(s *cluster.State, req EvacuationRequest, limits Limits, o Options,
	duration func(vm *cluster.VM) time.Duration) (makespan, lowerBound time.Duration, err error) {
	fail := func(format string, args ...any) (time.Duration, time.Duration, error) {
		return 0, 0, fmt.Errorf("simulate evacuation of %s: %s", req.Host, fmt.Sprintf(format, args...))
	}
	if err := limits.Validate(); err != nil {
		return fail("limits: %v", err)
	}
	if duration == nil {
		return fail("no duration function")
	}
	pre := PrecheckEvacuation(s, nil, req, o)
	if !pre.OK() {
		b := pre.Blockers[0]
		return fail("%d blockers, first: %s", len(pre.Blockers), describe(b))
	}
	moving := make([]*cluster.VM, 0, len(pre.LiveMigrate)+len(pre.OfflineMigrate))
	for _, list := range [][]Item{pre.LiveMigrate, pre.OfflineMigrate} {
		for _, it := range list {
			moving = append(moving, s.VMs[it.VM])
		}
	}
	if len(moving) == 0 {
		return 0, 0, nil
	}
	Order(moving)

	took := make(map[string]time.Duration, len(moving))
	var sum, longest time.Duration
	for _, vm := range moving {
		d := duration(vm)
		if d < 0 {
			return fail("vm %s: negative migration time %s", vm.Name, d)
		}
		took[vm.ID] = d
		sum += d
		longest = max(longest, d)
	}
	targets := 1
	if req.TargetHost == "" {
		targets = len(newFleet(s, nil, nil, s.Hosts[req.Host], "", o).cands)
	}
	usable := min(limits.PerSource, limits.Cluster, limits.PerTarget*targets)
	if usable < 1 {
		return fail("no feasible target host")
	}
	lowerBound = max(sum/time.Duration(usable), longest)

	makespan, err = runEvacuation(s, req, limits, o, moving, took)
	if err != nil {
		return fail("%v", err)
	}
	return makespan, lowerBound, nil
}

// runEvacuation is the event loop of SimulateEvacuation.
func runEvacuation(s *cluster.State, req EvacuationRequest, limits Limits, o Options,
	pending []*cluster.VM, took map[string]time.Duration) (time.Duration, error) {
	ledger := NewLedger()
	usage := s.Usage()
	o.MaxInFlightTo = limits.PerTarget
	var now time.Duration
	var inFlight []flight
	for {
		for i := 0; i < len(pending); i++ {
			if ledger.Total() >= limits.Cluster || ledger.InFlightFrom(req.Host) >= limits.PerSource {
				break
			}
			vm := pending[i]
			p := NextTarget(s, usage, ledger, vm, req, nil, o)
			if p.Host == "" {
				if p.Transient() {
					continue
				}
				return 0, fmt.Errorf("at %s, vm %s: %s", now, vm.Name, p.Explain())
			}
			if !limits.Allow(ledger, vm.Host, p.Host) {
				continue
			}
			need := MemoryNeed(vm)
			ledger.Reserve(vm.ID, vm.Host, p.Host, need)
			inFlight = append(inFlight, flight{end: now + took[vm.ID], vm: vm, to: p.Host, need: need})
			pending = slices.Delete(pending, i, i+1)
			i--
		}
		if len(inFlight) == 0 {
			if len(pending) > 0 {
				return 0, errors.New("stuck: VMs wait but no migration is in flight")
			}
			return now, nil
		}
		now = inFlight[0].end
		for _, f := range inFlight[1:] {
			now = min(now, f.end)
		}
		inFlight = slices.DeleteFunc(inFlight, func(f flight) bool {
			if f.end != now {
				return false
			}
			ledger.Release(f.vm.ID)
			to, from := usage[f.to], usage[f.vm.Host]
			to.MemoryUsedBytes += f.need
			from.MemoryUsedBytes -= f.need
			usage[f.to], usage[f.vm.Host] = to, from
			return true
		})
	}
}

// describe names a blocker's VM, if any, with its reason.
func describe(b Blocker) string {
	if b.VM == "" {
		return b.Reason
	}
	return fmt.Sprintf("vm %s: %s", b.Name, b.Reason)
}
