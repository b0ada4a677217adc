package placement

import (
	"maps"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
)

// Compiled is a policy resolved against one state: which hosts are in which
// host group, which VMs in which vm group, the rules and budgets that apply
// to each VM. Placement reads it through Options.Policy. It is immutable
// and safe for concurrent readers.
//
// Host groups follow the hosts: a host that changed since (a new value in
// the state, with new labels, say) is matched again. VM groups are
// resolved when compiling: compile again when VMs come and go (State.Index
// tells). A VM that the state did not hold then is matched on the fly when
// it is placed, but does not yet count as a member for the rules of
// others.
//
// Placing a VM under a vm-affinity or vm-anti-affinity rule reads where
// every other member of the group is: rules between VMs suit groups of
// tens or hundreds, not a pattern matching the whole inventory.
type Compiled struct {
	doc   *policy.Document
	index uint64

	hostGroups []hostGroup
	hostIdx    map[string]int
	// hostBits holds, for each host of the compiled state, the first 64
	// host groups it is in (bit i for group i). Hosts are immutable values,
	// so a host found here is in the same groups still.
	hostBits map[*cluster.Host]uint64

	vmGroups []vmGroup
	vmIdx    map[string]int
	listed   map[string][]int32 // VM name or id → groups that list it
	patterns []patternGroup
	vmIn     map[string][]int32 // VM id → its groups, for VMs in any

	rules      []compiledRule
	groupRules [][]int32 // vm group → its rules
	budgets    []int     // vm group → max_migrating, 0 for none
}

// hostGroup is one resolved host group; few holds short host lists,
// compared without hashing.
type hostGroup struct {
	name     string
	few      []string
	hosts    map[string]bool // lists longer than fewHosts
	selector []label
	members  []string // at compile time, sorted
}

// label is one key=value of a selector.
type label struct{ key, value string }

// fewHosts is the longest host list compared name by name.
const fewHosts = 8

func newHostGroup(g policy.HostGroup) hostGroup {
	hg := hostGroup{name: g.Name}
	if len(g.Hosts) <= fewHosts {
		hg.few = g.Hosts
	} else {
		hg.hosts = make(map[string]bool, len(g.Hosts))
		for _, h := range g.Hosts {
			hg.hosts[h] = true
		}
	}
	for _, k := range slices.Sorted(maps.Keys(g.Selector)) {
		hg.selector = append(hg.selector, label{k, g.Selector[k]})
	}
	return hg
}

// admits reports whether h belongs to the group: listed, or matching every
// label of the selector.
func (g *hostGroup) admits(h *cluster.Host) bool {
	for _, n := range g.few {
		if n == h.Name {
			return true
		}
	}
	if g.hosts[h.Name] {
		return true
	}
	if len(g.selector) == 0 {
		return false
	}
	for _, l := range g.selector {
		if got, ok := h.Labels[l.key]; !ok || got != l.value {
			return false
		}
	}
	return true
}

// vmGroup is one resolved vm group.
type vmGroup struct {
	name     string
	priority int
	members  []string // VM ids, sorted
}

// patternGroup is a vm group's name pattern.
type patternGroup struct {
	group int32
	match matcher
}

// compiledRule is a rule with its groups resolved; host is -1 for the rules
// between VMs.
type compiledRule struct {
	policy.Rule
	vm, host int32
	must     bool
}

// Compile resolves the validated document d against s. A nil d is the
// default policy. References to groups that d does not define (which
// validation rejects) are ignored.
func Compile(d *policy.Document, s *cluster.State) *Compiled {
	if d == nil {
		d = policy.Default()
	}
	c := &Compiled{doc: d, index: s.Index}
	c.compileHosts(s)
	c.compileVMs(s)
	c.groupRules = make([][]int32, len(c.vmGroups))
	for _, r := range d.Rules {
		vi, ok := c.vmIdx[r.VMGroup]
		if !ok {
			continue
		}
		cr := compiledRule{Rule: r, vm: int32(vi), host: -1, must: r.Enforcement == policy.Must}
		hosts, known := policy.RuleTypeHosts(r.Type)
		if !known {
			continue
		}
		if hosts {
			hi, ok := c.hostIdx[r.HostGroup]
			if !ok {
				continue
			}
			cr.host = int32(hi)
		}
		c.groupRules[vi] = append(c.groupRules[vi], int32(len(c.rules)))
		c.rules = append(c.rules, cr)
	}
	c.budgets = make([]int, len(c.vmGroups))
	for _, b := range d.DisruptionBudgets {
		if vi, ok := c.vmIdx[b.VMGroup]; ok {
			c.budgets[vi] = b.MaxMigrating
		}
	}
	return c
}

func (c *Compiled) compileHosts(s *cluster.State) {
	c.hostGroups = make([]hostGroup, len(c.doc.HostGroups))
	c.hostIdx = make(map[string]int, len(c.hostGroups))
	for i, g := range c.doc.HostGroups {
		c.hostGroups[i] = newHostGroup(g)
		c.hostIdx[g.Name] = i
	}
	c.hostBits = make(map[*cluster.Host]uint64, len(s.Hosts))
	for name, h := range s.Hosts {
		var bits uint64
		for i := range c.hostGroups {
			g := &c.hostGroups[i]
			if g.admits(h) {
				g.members = append(g.members, name)
				if i < 64 {
					bits |= 1 << i
				}
			}
		}
		c.hostBits[h] = bits
	}
	for i := range c.hostGroups {
		sort.Strings(c.hostGroups[i].members)
	}
}

func (c *Compiled) compileVMs(s *cluster.State) {
	c.vmGroups = make([]vmGroup, len(c.doc.VMGroups))
	c.vmIdx = make(map[string]int, len(c.vmGroups))
	c.listed = map[string][]int32{}
	for i, g := range c.doc.VMGroups {
		c.vmGroups[i] = vmGroup{name: g.Name, priority: g.Priority}
		c.vmIdx[g.Name] = i
		for _, v := range g.VMs {
			if !slices.Contains(c.listed[v], int32(i)) {
				c.listed[v] = append(c.listed[v], int32(i))
			}
		}
		if g.Pattern != "" {
			c.patterns = append(c.patterns, patternGroup{group: int32(i), match: newMatcher(g.Pattern)})
		}
	}
	c.vmIn = map[string][]int32{}
	if len(c.vmGroups) == 0 {
		return
	}
	for id, vm := range s.VMs {
		gs := c.matchVM(vm)
		if len(gs) == 0 {
			continue
		}
		c.vmIn[id] = gs
		for _, g := range gs {
			c.vmGroups[g].members = append(c.vmGroups[g].members, id)
		}
	}
	for i := range c.vmGroups {
		sort.Strings(c.vmGroups[i].members)
	}
}

// matchVM returns the groups vm belongs to, in order: listed by id or name,
// or matching a pattern.
func (c *Compiled) matchVM(vm *cluster.VM) []int32 {
	var gs []int32
	add := func(g int32) {
		if !slices.Contains(gs, g) {
			gs = append(gs, g)
		}
	}
	for _, g := range c.listed[vm.ID] {
		add(g)
	}
	if vm.Name != vm.ID {
		for _, g := range c.listed[vm.Name] {
			add(g)
		}
	}
	for i := range c.patterns {
		if c.patterns[i].match.matches(vm.Name) {
			add(c.patterns[i].group)
		}
	}
	slices.Sort(gs)
	return gs
}

// groupsOf returns the groups of vm, as compiled or matched now.
func (c *Compiled) groupsOf(vm *cluster.VM) []int32 {
	if gs, ok := c.vmIn[vm.ID]; ok {
		return gs
	}
	if len(c.vmGroups) == 0 {
		return nil
	}
	return c.matchVM(vm)
}

// matcher is a path.Match pattern with fast paths for the common shapes:
// a plain name, "prefix*" and "*suffix".
type matcher struct {
	kind    byte // '=' plain, '<' prefix, '>' suffix, '*' general
	literal string
	pattern string
}

func newMatcher(p string) matcher {
	const meta = `*?[\`
	switch {
	case !strings.ContainsAny(p, meta):
		return matcher{kind: '=', literal: p}
	case strings.HasSuffix(p, "*") && !strings.ContainsAny(p[:len(p)-1], meta):
		return matcher{kind: '<', literal: p[:len(p)-1]}
	case strings.HasPrefix(p, "*") && !strings.ContainsAny(p[1:], meta):
		return matcher{kind: '>', literal: p[1:]}
	}
	return matcher{kind: '*', pattern: p}
}

// matches reports whether name matches, exactly as path.Match would ('*'
// does not cross '/').
func (m *matcher) matches(name string) bool {
	switch m.kind {
	case '=':
		return name == m.literal
	case '<':
		return strings.HasPrefix(name, m.literal) && !strings.Contains(name[len(m.literal):], "/")
	case '>':
		return strings.HasSuffix(name, m.literal) && !strings.Contains(name[:len(name)-len(m.literal)], "/")
	}
	ok, _ := path.Match(m.pattern, name)
	return ok
}
