package policy

import (
	"fmt"
	"sort"
)

// contradictions reports must rules that no placement can satisfy together,
// at the later rule of each pair:
//   - vm-affinity and vm-anti-affinity on one vm group, or on two groups
//     that both list at least two of the same VMs;
//   - vm-host-affinity and vm-host-anti-affinity for one vm group and one
//     host group;
//   - two vm-host-affinity rules for one vm group whose host groups are
//     plain host lists with no host in common.
//
// Overlaps that depend on patterns, selectors or the inventory cannot be
// seen here; placement then finds no host and says which rule rejected
// each one.
func (c *checker) contradictions(d *Document) {
	vmLists := make(map[string][]string, len(d.VMGroups))
	for _, g := range d.VMGroups {
		vmLists[g.Name] = g.VMs
	}
	hostLists := make(map[string]*HostGroup, len(d.HostGroups))
	for i := range d.HostGroups {
		hostLists[d.HostGroups[i].Name] = &d.HostGroups[i]
	}
	for j, b := range d.Rules {
		if b.Enforcement != Must {
			continue
		}
		for i, a := range d.Rules[:j] {
			if a.Enforcement != Must {
				continue
			}
			if why := contradiction(a, b, vmLists, hostLists); why != "" {
				c.add(fmt.Sprintf("rules[%d]", j), "must %s contradicts must %s rule %q (rules[%d]): %s",
					b.Type, a.Type, a.Name, i, why)
			}
		}
	}
}

// contradiction says why must rules a and b cannot both hold, or "".
func contradiction(a, b Rule, vmLists map[string][]string, hostLists map[string]*HostGroup) string {
	pair := func(x, y string) bool { return a.Type == x && b.Type == y || a.Type == y && b.Type == x }
	switch {
	case pair(RuleVMAffinity, RuleVMAntiAffinity):
		if a.VMGroup == b.VMGroup {
			return fmt.Sprintf("the VMs of vm group %q cannot share one host and run on different hosts", a.VMGroup)
		}
		if both := common(vmLists[a.VMGroup], vmLists[b.VMGroup]); len(both) >= 2 {
			return fmt.Sprintf("vm groups %q and %q both list %q and %q, which cannot share one host and run on different hosts",
				a.VMGroup, b.VMGroup, both[0], both[1])
		}
	case pair(RuleVMHostAffinity, RuleVMHostAntiAffinity):
		if a.VMGroup == b.VMGroup && a.HostGroup == b.HostGroup {
			return fmt.Sprintf("the VMs of vm group %q cannot both run in and stay out of host group %q", a.VMGroup, a.HostGroup)
		}
	case a.Type == RuleVMHostAffinity && b.Type == RuleVMHostAffinity:
		ga, gb := hostLists[a.HostGroup], hostLists[b.HostGroup]
		if a.VMGroup == b.VMGroup && ga != nil && gb != nil && len(ga.Selector) == 0 && len(gb.Selector) == 0 &&
			len(common(ga.Hosts, gb.Hosts)) == 0 {
			return fmt.Sprintf("host groups %q and %q share no host, so the VMs of vm group %q could run nowhere",
				a.HostGroup, b.HostGroup, a.VMGroup)
		}
	}
	return ""
}

// common returns the strings in both a and b, sorted.
func common(a, b []string) []string {
	in := make(map[string]bool, len(a))
	for _, v := range a {
		in[v] = true
	}
	var out []string
	for _, v := range b {
		if in[v] {
			out = append(out, v)
			in[v] = false
		}
	}
	sort.Strings(out)
	return out
}
