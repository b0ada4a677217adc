package placement

import (
	"fmt"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
)

// RuleView is the policy resolved for placing one VM: its must rules as
// filters, its should rules as a score, and whether its disruption budget
// is used up. A nil *RuleView has no rules.
type RuleView struct {
	c     *Compiled
	hosts []hostRule
	vms   []vmRule
	mustN int
	// hostWeight sums the weights of the should vm-host rules.
	hostWeight int
	// budget says which budget is used up, "" when none is.
	budget string
}

// hostRule is a vm-host rule for one placement.
type hostRule struct {
	name   string
	anti   bool
	must   bool
	weight int
	group  *hostGroup
	idx    int32 // of group
	// listed are the group's listed hosts as the state holds them, when
	// the group is a short list and nothing else.
	listed []*cluster.Host
}

// vmRule is a vm-vm rule for one placement, with where the group's other
// members are.
type vmRule struct {
	name   string
	anti   bool
	must   bool
	weight int
	// occupied (anti-affinity) holds the hosts where another member runs or
	// is moving to; anchor (affinity) is the host the VM must join, nil when
	// no other member anchors the group.
	occupied hostSet
	anchor   *cluster.Host
}

// NewRuleView gathers the rules for placing vm, reading the other members'
// places from s and l. Members on the host leaving (being evacuated, "" for
// none) or on any host closing to VMs do not anchor a vm-affinity group:
// they are about to move as well. It returns nil when no rule or budget
// applies.
func NewRuleView(c *Compiled, s *cluster.State, l *Ledger, vm *cluster.VM, leaving string) *RuleView {
	if c == nil {
		return nil
	}
	gs := c.groupsOf(vm)
	if len(gs) == 0 {
		return nil
	}
	v := &RuleView{c: c}
	for _, g := range gs {
		for _, ri := range c.groupRules[g] {
			r := &c.rules[ri]
			if r.must {
				v.mustN++
			}
			switch r.Type {
			case policy.RuleVMHostAffinity, policy.RuleVMHostAntiAffinity:
				hr := hostRule{name: r.Name, anti: r.Type == policy.RuleVMHostAntiAffinity, must: r.must, weight: r.Weight,
					group: &c.hostGroups[r.host], idx: r.host}
				if hg := hr.group; hg.hosts == nil && len(hg.selector) == 0 {
					hr.listed = make([]*cluster.Host, 0, len(hg.few))
					for _, n := range hg.few {
						if h := s.Hosts[n]; h != nil {
							hr.listed = append(hr.listed, h)
						}
					}
				}
				v.hosts = append(v.hosts, hr)
				if !r.must {
					v.hostWeight += r.Weight
				}
			case policy.RuleVMAntiAffinity:
				v.vms = append(v.vms, vmRule{name: r.Name, anti: true, must: r.must, weight: r.Weight,
					occupied: c.occupied(g, s, l, vm.ID)})
			case policy.RuleVMAffinity:
				v.vms = append(v.vms, vmRule{name: r.Name, must: r.must, weight: r.Weight,
					anchor: c.anchor(g, s, l, vm.ID, leaving)})
			}
		}
		if most := c.budgets[g]; most > 0 && v.budget == "" {
			if n := c.migrating(g, l, vm.ID); n >= most {
				v.budget = fmt.Sprintf("vm group %q has %d of %d migrating", c.vmGroups[g].name, n, most)
			}
		}
	}
	if len(v.hosts) == 0 && len(v.vms) == 0 && v.budget == "" {
		return nil
	}
	return v
}

// must applies the must rules to h: the reason and rule name of the first
// one it breaks, or fits.
func (v *RuleView) must(h *cluster.Host) (reason, string) {
	if v == nil || v.mustN == 0 {
		return fits, ""
	}
	for i := range v.hosts {
		r := &v.hosts[i]
		if !r.must || v.in(r, h) != r.anti {
			continue
		}
		if r.anti {
			return rVMHostAntiAffinity, r.name
		}
		return rVMHostAffinity, r.name
	}
	for i := range v.vms {
		r := &v.vms[i]
		switch {
		case !r.must:
		case r.anti && r.occupied.has(h):
			return rVMAntiAffinity, r.name
		case !r.anti && r.anchor != nil && r.anchor != h:
			return rVMAffinity, r.name
		}
	}
	return fits, ""
}

// in reports whether h is in the host group of r: by identity for a short
// list, else as compiled for a host the compiled state held as it is, else
// from its name and labels.
func (v *RuleView) in(r *hostRule, h *cluster.Host) bool {
	if r.listed != nil {
		for _, x := range r.listed {
			if x == h {
				return true
			}
		}
		return false
	}
	if r.idx < 64 {
		if bits, ok := v.c.hostBits[h]; ok {
			return bits&(1<<r.idx) != 0
		}
	}
	return r.group.admits(h)
}

// The should rules add the weight of each one kept on a host and subtract
// the weight of each one broken. vmScore sums those between VMs, which are
// cheap; hostScore those on host groups, which read the host's labels, so
// Place asks for them only for a host that could win with all of them kept
// (hostWeight more).

// vmScore sums the should rules between VMs on h.
func (v *RuleView) vmScore(h *cluster.Host) int {
	if v == nil {
		return 0
	}
	sum := 0
	for i := range v.vms {
		r := &v.vms[i]
		switch {
		case r.must:
		case r.anti:
			sum += keptWeight(!r.occupied.has(h), r.weight)
		default:
			sum += keptWeight(r.anchor == nil || r.anchor == h, r.weight)
		}
	}
	return sum
}

// hostScore sums the should vm-host rules on h.
func (v *RuleView) hostScore(h *cluster.Host) int {
	if v == nil {
		return 0
	}
	sum := 0
	for i := range v.hosts {
		if r := &v.hosts[i]; !r.must {
			sum += keptWeight(v.in(r, h) != r.anti, r.weight)
		}
	}
	return sum
}

// score is the whole should-rule score of h.
func (v *RuleView) score(h *cluster.Host) int { return v.vmScore(h) + v.hostScore(h) }

// Score is the whole should-rule score of h for the VM: higher is better.
func (v *RuleView) Score(h *cluster.Host) int { return v.score(h) }

// Broken returns the first must rule that h breaks for the VM, with the
// Reason* it counts under; "", "" when h breaks none.
func (v *RuleView) Broken(h *cluster.Host) (reason, rule string) {
	r, rule := v.must(h)
	return reasonNames[r], rule
}

// hostRoom is the most hostScore can add.
func (v *RuleView) hostRoom() int {
	if v == nil {
		return 0
	}
	return v.hostWeight
}

func keptWeight(kept bool, w int) int {
	if kept {
		return w
	}
	return -w
}

// budgetSpent says which disruption budget holds vm back, or "".
func (v *RuleView) budgetSpent() string {
	if v == nil {
		return ""
	}
	return v.budget
}
