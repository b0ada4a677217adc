package placement

import (
	"slices"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
)

// Document returns the policy that c was compiled from.
func (c *Compiled) Document() *policy.Document { return c.doc }

// Index returns the raft index of the state c was compiled against: compile
// again when the state has moved on and hosts or VMs changed.
func (c *Compiled) Index() uint64 { return c.index }

// Options returns the placement options the policy sets (memory reserve,
// CPU overcommit, strategy), with c as the policy.
func (c *Compiled) Options() Options {
	p := c.doc.Placement
	return Options{MemoryReserve: p.MemoryReserve, CPUOvercommit: p.CPUOvercommit, Strategy: p.Strategy, Policy: c}
}

// HasRules reports whether the policy has any rule.
func (c *Compiled) HasRules() bool { return c != nil && len(c.rules) > 0 }

// HostsIn returns the names of the hosts in the host group, sorted; nil for
// an unknown group.
func (c *Compiled) HostsIn(group string) []string {
	if i, ok := c.hostIdx[group]; ok {
		return c.hostGroups[i].members
	}
	return nil
}

// VMsIn returns the ids of the VMs in the vm group, sorted; nil for an
// unknown group.
func (c *Compiled) VMsIn(group string) []string {
	if i, ok := c.vmIdx[group]; ok {
		return c.vmGroups[i].members
	}
	return nil
}

// InHostGroup reports whether host h is in the host group.
func (c *Compiled) InHostGroup(h *cluster.Host, group string) bool {
	i, ok := c.hostIdx[group]
	return ok && c.hostGroups[i].admits(h)
}

// GroupsOf returns the names of the vm groups vm is in, in policy order.
func (c *Compiled) GroupsOf(vm *cluster.VM) []string {
	gs := c.groupsOf(vm)
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = c.vmGroups[g].name
	}
	return out
}

// Priority returns vm's availability priority: the highest of its own and
// those of its groups.
func (c *Compiled) Priority(vm *cluster.VM) int {
	p := vm.Priority
	for _, g := range c.groupsOf(vm) {
		p = max(p, c.vmGroups[g].priority)
	}
	return p
}

// RulesFor returns the rules that constrain vm, in policy order.
func (c *Compiled) RulesFor(vm *cluster.VM) []policy.Rule {
	var idx []int32
	for _, g := range c.groupsOf(vm) {
		idx = append(idx, c.groupRules[g]...)
	}
	slices.Sort(idx)
	out := make([]policy.Rule, len(idx))
	for i, ri := range idx {
		out[i] = c.rules[ri].Rule
	}
	return out
}

// Budget returns the max_migrating of the vm group's disruption budget, 0
// when it has none.
func (c *Compiled) Budget(group string) int {
	if i, ok := c.vmIdx[group]; ok {
		return c.budgets[i]
	}
	return 0
}

// BudgetsFor returns the disruption budgets that cap vm's moves.
func (c *Compiled) BudgetsFor(vm *cluster.VM) []policy.DisruptionBudget {
	var out []policy.DisruptionBudget
	for _, g := range c.groupsOf(vm) {
		if n := c.budgets[g]; n > 0 {
			out = append(out, policy.DisruptionBudget{VMGroup: c.vmGroups[g].name, MaxMigrating: n})
		}
	}
	return out
}
