package balancing

import (
	"math"
	"slices"
	"sort"
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy/placement"
	"github.com/herd-project/herd/policy/policytest"
)

// applyPlan returns s with the plan's moves done.
func applyPlan(s *cluster.State, p Plan) *cluster.State {
	c := s.Snapshot()
	for _, m := range p.Moves {
		vm := *c.VMs[m.VM]
		vm.Host = m.To
		c.VMs[m.VM] = &vm
	}
	return c
}

// checkPlan fails t unless every move of p is one the planner may make:
// a running, movable VM that is not moving yet, from the host it is on (or
// was moved to by no earlier move: each VM moves once), to another host of
// its group that may take VMs, within every host's memory counting all the
// plan's moves and l's as reserved and no source credited.
func checkPlan(t testing.TB, s *cluster.State, l *placement.Ledger, o placement.Options, p Plan) {
	t.Helper()
	usage := s.Usage()
	reserved := map[string]int64{}
	for _, m := range l.Moves() {
		reserved[m.To] += m.Bytes
	}
	seen := map[string]bool{}
	for i, m := range p.Moves {
		vm := s.VMs[m.VM]
		switch {
		case vm == nil:
			t.Fatalf("move %d: unknown VM %s", i, m.VM)
		case seen[m.VM]:
			t.Fatalf("move %d: VM %s moves twice", i, m.VM)
		case vm.Host != m.From:
			t.Fatalf("move %d: VM %s is on %s, not %s", i, m.VM, vm.Host, m.From)
		case (vm.Power != cluster.PoweredOn) != m.Offline || vm.Unmovable != "":
			t.Fatalf("move %d: VM %s is %s (offline move %v), unmovable %q", i, m.VM, vm.Power, m.Offline, vm.Unmovable)
		case m.MemoryBytes != vm.MemoryBytes:
			t.Fatalf("move %d: memory %d, VM has %d", i, m.MemoryBytes, vm.MemoryBytes)
		}
		if _, moving := l.Move(m.VM); moving {
			t.Fatalf("move %d: VM %s is already moving", i, m.VM)
		}
		seen[m.VM] = true
		src, dst := s.Hosts[m.From], s.Hosts[m.To]
		if dst == nil || src.Driver != dst.Driver || src.Group != dst.Group || m.From == m.To {
			t.Fatalf("move %d: %s → %s leaves the driver group", i, m.From, m.To)
		}
		if dst.Admin != cluster.Available || dst.Maintenance != cluster.MaintenanceOff ||
			(dst.Health != cluster.HealthAlive && dst.Health != cluster.HealthUnknown) || dst.Connection != cluster.Connected {
			t.Fatalf("move %d: target %s may not take VMs: %s, %s, %s, %s", i, m.To, dst.Admin, dst.Maintenance, dst.Health, dst.Connection)
		}
		if m.Offline {
			continue // a stopped VM takes no memory
		}
		reserved[m.To] += vm.MemoryBytes
		if used := usage[m.To].MemoryUsedBytes + reserved[m.To]; used > placement.Usable(dst, o.MemoryReserve) {
			t.Fatalf("move %d: target %s overfilled: %d of %d usable", i, m.To, used, placement.Usable(dst, o.MemoryReserve))
		}
	}
}

// memImbalance is the memory imbalance of s over the hosts named (all when
// none): highest utilisation minus used over capacity.
func memImbalance(s *cluster.State, hosts ...string) float64 {
	if len(hosts) == 0 {
		hosts = s.HostNames()
	}
	usage := s.Usage()
	var used, capacity float64
	peak, low := 0.0, math.Inf(1)
	for _, h := range hosts {
		u, c := float64(usage[h].MemoryUsedBytes), float64(s.Hosts[h].MemoryBytes)
		used += u
		capacity += c
		peak, low = math.Max(peak, u/c), math.Min(low, u/c)
	}
	return math.Max(peak-used/capacity, used/capacity-low)
}

// bruteForceMoves returns the fewest moves that bring the memory imbalance
// of s (one group, no reserve) to at most t, where, as in Compute, each
// move takes a running movable VM that has not moved yet to another host
// with the memory for it and lowers the higher utilisation of its two hosts;
// -1 when no sequence of at most maxMoves does. It tries every sequence:
// keep s tiny.
func bruteForceMoves(s *cluster.State, t float64, maxMoves int) int {
	hosts := s.HostNames()
	at := map[string]int{}
	capacity := make([]float64, len(hosts))
	load := make([]float64, len(hosts))
	var total, totalCap float64
	for i, n := range hosts {
		at[n] = i
		capacity[i] = float64(s.Hosts[n].MemoryBytes)
		totalCap += capacity[i]
	}
	var vms []*cluster.VM
	for _, vm := range s.SortedVMs() {
		if vm.Power != cluster.PoweredOn {
			continue
		}
		load[at[vm.Host]] += float64(vm.MemoryBytes)
		total += float64(vm.MemoryBytes)
		if vm.Unmovable == "" {
			vms = append(vms, vm)
		}
	}
	mean := total / totalCap
	moved := make([]bool, len(vms))
	done := func() bool {
		peak, low := 0.0, math.Inf(1)
		for i := range hosts {
			peak, low = math.Max(peak, load[i]/capacity[i]), math.Min(low, load[i]/capacity[i])
		}
		return peak-mean <= t+balanceEps && mean-low <= t+balanceEps
	}
	var search func(depth int) bool
	search = func(depth int) bool {
		if done() {
			return true
		}
		if depth == 0 {
			return false
		}
		for k, vm := range vms {
			if moved[k] {
				continue
			}
			a, w := at[vm.Host], float64(vm.MemoryBytes)
			for b := range hosts {
				if b == a || load[b]+w > capacity[b] {
					continue
				}
				xa, xb := load[a]/capacity[a], load[b]/capacity[b]
				if math.Max(xa-w/capacity[a], xb+w/capacity[b]) >= math.Max(xa, xb)-balanceEps {
					continue
				}
				load[a], load[b], moved[k] = load[a]-w, load[b]+w, true
				ok := search(depth - 1)
				load[a], load[b], moved[k] = load[a]+w, load[b]-w, false
				if ok {
					return true
				}
			}
		}
		return false
	}
	for d := 0; d <= maxMoves; d++ {
		if search(d) {
			return d
		}
	}
	return -1
}

// movesLowerBound is a lower bound on the moves of any plan that brings the
// memory imbalance of s (one group) to at most t: each host above the line
// must lose at least its excess, so at least as many VMs as its largest
// movable VMs needed to cover it.
func movesLowerBound(s *cluster.State, t float64) int {
	usage := s.Usage()
	var used, capacity float64
	for name, h := range s.Hosts {
		used += float64(usage[name].MemoryUsedBytes)
		capacity += float64(h.MemoryBytes)
	}
	line := used/capacity + t
	bound := 0
	for name, h := range s.Hosts {
		excess := float64(usage[name].MemoryUsedBytes) - line*float64(h.MemoryBytes)
		var sizes []int64
		for _, vm := range s.VMsOn(name) {
			if vm.Power == cluster.PoweredOn && vm.Unmovable == "" {
				sizes = append(sizes, vm.MemoryBytes)
			}
		}
		sort.Slice(sizes, func(i, j int) bool { return sizes[i] > sizes[j] })
		for i := 0; i < len(sizes) && excess > balanceEps*float64(h.MemoryBytes); i++ {
			excess -= float64(sizes[i])
			bound++
		}
	}
	return bound
}

// moveIDs lists the VM ids of the plan's moves, sorted.
func moveIDs(p Plan) []string {
	out := make([]string, len(p.Moves))
	for i, m := range p.Moves {
		out[i] = m.VM
	}
	slices.Sort(out)
	return out
}

// header opens every test policy.
const header = policytest.Header

// mustCompile compiles the policy of header+body against s.
func mustCompile(t testing.TB, s *cluster.State, body string) *placement.Compiled {
	t.Helper()
	return placement.Compile(policytest.MustParse(t, body), s)
}
