// Package balancing plans balancing, as DRS does: moves that even out the
// load of each driver group (or empty hosts to save power), fix the must
// rules the placement breaks, and count the should rules in every score.
// Pure: it takes a snapshot and returns a plan.
package balancing

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/placement"
)

// Input is what Compute plans from: a snapshot of the state, the
// moves in flight, the balancing policy and, for the cpu metric, each host's
// measured CPU utilisation.
type Input struct {
	State *cluster.State
	// Ledger holds the moves in flight (nil for none). Compute plans on
	// a copy and leaves it unchanged.
	Ledger *placement.Ledger
	Policy policy.BalancingPolicy
	// Options are the placement options. AllowNotAccepting and MaxInFlightTo
	// are ignored: balancing is automatic placement, and a plan is a list of
	// moves run over time, whose concurrency the migration gate limits.
	Options placement.Options
	// CPU is each host's CPU utilisation, 0 to 1, from Prometheus, read
	// when the policy's metric is cpu. A host without a value makes the
	// whole plan fall back to memory.
	CPU map[string]float64
	// FailoverMin is the failover capacity (see FailoverCapacity) that
	// power-saving must leave; 0 for no minimum.
	FailoverMin int
	// Moved is when balancing last moved each VM; with Now and
	// Policy.Hold, a VM moved less than Hold ago stays where it is, so that
	// no round undoes an earlier one.
	Moved map[string]time.Time
	Now   time.Time
	// Frozen names the hosts an evacuation or recovery is working on (the
	// whole driver group of its host), with why: no balancing there until
	// it ends.
	Frozen map[string]string
}

// Move is one live migration of a plan.
type Move struct {
	VM          string `json:"vm"` // id
	Name        string `json:"name"`
	From        string `json:"from"`
	To          string `json:"to"`
	MemoryBytes int64  `json:"memory_bytes"`
	// Offline: the VM is stopped and moves offline (power-saving empties
	// hosts of their stopped VMs too).
	Offline bool `json:"offline,omitempty"`
	// Rule names the must rule the VM's host breaks: the move fixes it
	// (such moves come first).
	Rule string `json:"rule,omitempty"`
	// Gain is, for evenly-distributed, how much the move lowers the higher
	// utilisation of its two hosts: the drop of the imbalance when the
	// source is the only most loaded host, and its share of the drop when
	// several hosts are equally loaded. For power-saving it is the share of
	// the source's capacity the move frees.
	Gain float64 `json:"gain"`
}

// Plan is what Compute proposes. The controller decides whether
// to recommend or apply it.
type Plan struct {
	Strategy string `json:"strategy"`
	// Metric is the one the plan balanced: memory, or cpu when every host
	// had CPU data.
	Metric string `json:"metric"`
	// Before and After are the imbalance without and with the plan: how
	// far host utilisations spread from the mean (used over capacity) of
	// their driver and group, above or below, over the hosts that can take
	// VMs; the worst group counts. Hosts the plan empties are left out of
	// After.
	Before float64 `json:"imbalance_before"`
	After  float64 `json:"imbalance_after"`
	// SpreadBefore and SpreadAfter are the coefficient of variation of the
	// host utilisations (standard deviation over mean) of the worst group,
	// without and with the plan.
	SpreadBefore float64 `json:"spread_before"`
	SpreadAfter  float64 `json:"spread_after"`
	// Moves are in the order to run them.
	Moves []Move `json:"moves"`
	// EmptyHosts are the hosts a power-saving plan empties of every VM,
	// running or stopped, to power off.
	EmptyHosts []string `json:"empty_hosts,omitempty"`
	// Violations are the VMs whose host breaks a must rule, each with the
	// host the plan moves it to (first, before any balancing move) or why
	// it cannot.
	Violations []Violation `json:"violations,omitempty"`
	// Reason says why the plan has no moves, or why it stops short of its
	// goal, and notes a fallback from cpu to memory.
	Reason string `json:"reason,omitempty"`
}

// greedyCheck is the longest plan compared with the simple one: on large
// plans the two differ by a few moves and the comparison doubles the time.
const greedyCheck = 100

// balanceEps absorbs rounding when utilisations are compared.
const balanceEps = 1e-9

// Compute plans the live migrations that balance the cluster under
// in.Policy. It reads its input and changes nothing.
//
// evenly-distributed works in rounds while the imbalance is above the
// threshold and fewer than max_moves moves are planned. In a round, every
// host above the line (its group's mean plus the threshold) picks the VMs to
// shed: the fewest that bring it to the line, and among as few the least
// load, so that the VM best matching the gap goes rather than the biggest
// (a VM too big for any host's room under the line counts as two moves: a
// host must shed one of its own to make room). All those VMs, largest
// first, are packed best-fit into the room other hosts have under the line,
// hosts that shed included; the moves are emitted most utilised source
// first, a source that takes VMs shedding its own before. When a round
// finds nothing, one move off the most utilised host that most lowers the
// higher utilisation of its two hosts is planned instead. Every move must
// lower that by at least min_gain; a VM moves at most once.
//
// power-saving, lightest hosts first, empties each host whose running VMs
// all fit on the other hosts of its group (largest VM first, onto the most
// utilised host that takes it), within max_moves, keeping at least one host
// per group and, when in.FailoverMin is set, the failover capacity at or
// above it. Stopped VMs stay on an emptied host.
//
// Only running VMs that are not Unmovable and not already moving are
// planned, and every target passes the placement filters (PlaceOn, with
// the in-flight moves of in.Ledger and those planned before it reserved in
// a copy). A host that moves leave is not credited with the memory they
// free, so the plan stays within memory whatever order its moves run in.
// Hosts that cannot take VMs (not AVAILABLE, in maintenance, unhealthy,
// disconnected, excluded) are neither sources nor targets, and their load
// is not measured. max_moves of 0 or less sets no limit.
func Compute(in Input) Plan {
	plan := Plan{Strategy: in.Policy.Strategy, Metric: in.Policy.Metric, Moves: []Move{}}
	if plan.Strategy == "" {
		plan.Strategy = policy.BalanceEven
	}
	if plan.Metric == "" {
		plan.Metric = policy.BalanceByMemory
	}
	switch {
	case in.State == nil:
		plan.Reason = "no state to plan from"
		return plan
	case plan.Strategy != policy.BalanceEven && plan.Strategy != policy.BalancePowerSave:
		plan.Reason = fmt.Sprintf("strategy: must be %s or %s, got %q", policy.BalanceEven, policy.BalancePowerSave, plan.Strategy)
		return plan
	case plan.Metric != policy.BalanceByMemory && plan.Metric != policy.BalanceByCPU:
		plan.Reason = fmt.Sprintf("metric: must be %s or %s, got %q", policy.BalanceByMemory, policy.BalanceByCPU, plan.Metric)
		return plan
	}
	b := newBalancer(in, plan.Metric)
	plan.Metric = b.metric
	plan.Before, plan.SpreadBefore = b.imbalance(), b.spread()
	b.fixViolations(&plan)
	switch {
	case len(b.hosts) == 0:
		plan.Reason = "no hosts can take VMs"
	case plan.Strategy == policy.BalanceEven:
		b.planEven(&plan)
		if len(plan.Moves) > 1 && len(plan.Moves) <= greedyCheck && len(plan.Violations) == 0 {
			// The simple way (the heaviest VM of the most utilised host
			// onto the least utilised one) sometimes needs fewer moves.
			g := newBalancer(in, plan.Metric)
			alt := plan
			alt.Moves, alt.Reason = []Move{}, ""
			g.planGreedy(&alt)
			t := b.pol.Threshold + balanceEps
			if ga, ba := g.imbalance(), b.imbalance(); ga <= t && (ba > t || len(alt.Moves) < len(plan.Moves)) {
				plan, b = alt, g
			}
		}
	default:
		b.planPower(&plan, in.FailoverMin)
	}
	plan.After, plan.SpreadAfter = b.imbalance(), b.spread()
	if b.note != "" {
		plan.Reason = joinReasons(b.note, plan.Reason)
	}
	return plan
}

// joinReasons joins the non-empty reasons with "; ".
func joinReasons(rs ...string) string {
	out := rs[:0:0]
	for _, r := range rs {
		if r != "" {
			out = append(out, r)
		}
	}
	return strings.Join(out, "; ")
}

// imbalance is the worst group's highest utilisation minus its mean, over
// the hosts not emptied.
func (b *balancer) imbalance() float64 {
	worst := 0.0
	for _, g := range b.groups {
		worst = math.Max(worst, g.imbalance())
	}
	return worst
}

// imbalance is how far the group's hosts spread from its mean (used over
// capacity), above and below: the larger of the highest utilisation minus
// the mean and the mean minus the lowest, over the hosts not emptied. An
// empty host, just out of maintenance, counts as much as a crowded one.
func (g *bGroup) imbalance() float64 {
	return math.Max(g.highGap(), g.lowGap())
}

// highGap is the highest utilisation minus the mean; lowGap the mean minus
// the lowest (hosts not emptied).
func (g *bGroup) highGap() float64 {
	m := g.mean()
	gap := 0.0
	for _, h := range g.hosts {
		if h.role&roleEmptied == 0 {
			gap = math.Max(gap, h.util()-m)
		}
	}
	return gap
}

func (g *bGroup) lowGap() float64 {
	m := g.mean()
	gap := 0.0
	for _, h := range g.hosts {
		if h.role&roleEmptied == 0 {
			gap = math.Max(gap, m-h.util())
		}
	}
	return gap
}

// spread is the coefficient of variation of the worst group's host
// utilisations (standard deviation over mean, as Proxmox CRS measures
// it), over the hosts not emptied.
func (b *balancer) spread() float64 {
	worst := 0.0
	for _, g := range b.groups {
		m, n, sq := g.mean(), 0, 0.0
		for _, h := range g.hosts {
			if h.role&roleEmptied == 0 {
				n++
				sq += (h.util() - m) * (h.util() - m)
			}
		}
		if n > 0 && m > 0 {
			worst = math.Max(worst, math.Sqrt(sq/float64(n))/m)
		}
	}
	return worst
}

// mean is the group's utilisation: used over capacity of the hosts not
// emptied.
func (g *bGroup) mean() float64 {
	var load, capacity float64
	for _, h := range g.hosts {
		if h.role&roleEmptied == 0 {
			load += h.load
			capacity += h.cap
		}
	}
	if capacity <= 0 {
		return 0
	}
	return load / capacity
}

// moveLimit is max_moves, or no limit when it is not positive.
func (b *balancer) moveLimit() int {
	if b.pol.MaxMoves <= 0 {
		return math.MaxInt
	}
	return b.pol.MaxMoves
}

// percent formats a utilisation as people read it.
func percent(u float64) string {
	return fmt.Sprintf("%.1f%%", 100*u)
}
