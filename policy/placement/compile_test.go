package placement

import (
	"fmt"
	"path"
	"reflect"
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/policytest"
)

// mustCompile parses header+body and compiles it against s.
func mustCompile(t testing.TB, s *cluster.State, body string) *Compiled {
	t.Helper()
	return Compile(policytest.MustParse(t, body), s)
}

// setLabels sets the labels of host name.
func setLabels(s *cluster.State, name string, kv ...string) {
	policytest.SetHost(s, name, func(h *cluster.Host) {
		h.Labels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Labels[kv[i]] = kv[i+1]
		}
	})
}

const groupsPolicy = `host_groups:
  - {name: rack-a, selector: {rack: a}}
  - {name: ssd-a, selector: {rack: a, disk: ssd}}
  - {name: mixed, hosts: [h05, h99], selector: {rack: b}}
  - {name: many, hosts: [h01, h02, h03, h04, h05, h06, h07, h08, h09]}
vm_groups:
  - {name: web, pattern: web-*, priority: 10}
  - {name: db, vms: [uuid-db1, db-2], priority: 50}
  - {name: ones, pattern: "*-1"}
  - {name: short, pattern: "web-?"}
rules:
  - {name: web-apart, type: vm-anti-affinity, vm_group: web, enforcement: must}
  - {name: db-in-a, type: vm-host-affinity, vm_group: db, host_group: rack-a, enforcement: should}
  - {name: ones-off-ssd, type: vm-host-anti-affinity, vm_group: ones, host_group: ssd-a, enforcement: must}
disruption_budgets:
  - {vm_group: web, max_migrating: 2}
placement:
  strategy: pack
  cpu_overcommit: 3
  memory_reserve: 0.05
`

// groupsState has hosts h01…h06 with labels and VMs named to hit every
// kind of match.
func groupsState() *cluster.State {
	s := policytest.NewCluster(6, 64)
	setLabels(s, "h01", "rack", "a")
	setLabels(s, "h02", "rack", "a", "disk", "ssd")
	setLabels(s, "h03", "rack", "b")
	setLabels(s, "h04", "rack", "a", "disk", "hdd")
	for _, v := range [][2]string{{"web-1", "web-1"}, {"web-12", "web-12"}, {"uuid-db1", "db-1"}, {"db-2", "db-2"},
		{"x", "x/web-3"}, {"other", "other"}} {
		vm := policytest.AddVM(s, v[0], "h01", 1, cluster.PoweredOn)
		vm.Name = v[1]
	}
	s.VMs["web-12"].Priority = 20
	s.Index = 42
	return s
}

func TestCompileGroups(t *testing.T) {
	s := groupsState()
	c := mustCompile(t, s, groupsPolicy)
	for _, tc := range []struct {
		group string
		want  []string
	}{
		{"rack-a", []string{"h01", "h02", "h04"}},
		{"ssd-a", []string{"h02"}},
		{"mixed", []string{"h03", "h05"}},
		{"many", []string{"h01", "h02", "h03", "h04", "h05", "h06"}},
		{"nope", nil},
	} {
		if got := c.HostsIn(tc.group); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("HostsIn(%s) = %v, want %v", tc.group, got, tc.want)
		}
	}
	for _, tc := range []struct {
		group string
		want  []string
	}{
		{"web", []string{"web-1", "web-12"}}, // "x/web-3": * does not cross /
		{"db", []string{"db-2", "uuid-db1"}}, // by id and by name
		{"ones", []string{"uuid-db1", "web-1"}},
		{"short", []string{"web-1"}},
		{"nope", nil},
	} {
		if got := c.VMsIn(tc.group); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("VMsIn(%s) = %v, want %v", tc.group, got, tc.want)
		}
	}
	vm := s.VMs["web-1"]
	if got := c.GroupsOf(vm); !reflect.DeepEqual(got, []string{"web", "ones", "short"}) {
		t.Errorf("GroupsOf(web-1) = %v", got)
	}
	var names []string
	for _, r := range c.RulesFor(vm) {
		names = append(names, r.Name)
	}
	if !reflect.DeepEqual(names, []string{"web-apart", "ones-off-ssd"}) {
		t.Errorf("RulesFor(web-1) = %v, want web-apart, ones-off-ssd", names)
	}
	for id, want := range map[string]int{"web-1": 10, "web-12": 20, "uuid-db1": 50, "other": 0} {
		if got := c.Priority(s.VMs[id]); got != want {
			t.Errorf("Priority(%s) = %d, want %d (the highest of its own and its groups')", id, got, want)
		}
	}
	if c.Budget("web") != 2 || c.Budget("db") != 0 {
		t.Errorf("Budget(web, db) = %d, %d; want 2, 0", c.Budget("web"), c.Budget("db"))
	}
	if got := c.BudgetsFor(vm); !reflect.DeepEqual(got, []policy.DisruptionBudget{{VMGroup: "web", MaxMigrating: 2}}) {
		t.Errorf("BudgetsFor(web-1) = %v", got)
	}
	if got, want := c.Options(), (Options{MemoryReserve: 0.05, CPUOvercommit: 3, Strategy: policy.StrategyPack, Policy: c}); !reflect.DeepEqual(got, want) {
		t.Errorf("Options() = %+v, want %+v", got, want)
	}
	if c.Index() != 42 || c.Document().Placement.Strategy != policy.StrategyPack {
		t.Errorf("Index() = %d, Document() strategy %q", c.Index(), c.Document().Placement.Strategy)
	}
}

// TestCompileFollowsChanges: a host relabelled after compiling is matched
// again; a VM created after is matched when asked about.
func TestCompileFollowsChanges(t *testing.T) {
	s := groupsState()
	c := mustCompile(t, s, groupsPolicy)
	if !c.InHostGroup(s.Hosts["h02"], "ssd-a") || c.InHostGroup(s.Hosts["h03"], "rack-a") {
		t.Fatal("InHostGroup disagrees with HostsIn")
	}
	setLabels(s, "h02", "rack", "b")
	setLabels(s, "h03", "rack", "a", "disk", "ssd")
	if c.InHostGroup(s.Hosts["h02"], "ssd-a") || !c.InHostGroup(s.Hosts["h03"], "ssd-a") {
		t.Error("InHostGroup does not follow relabelled hosts")
	}
	s.Hosts["h07"] = &cluster.Host{Name: "h07", Labels: map[string]string{"rack": "a"}}
	if !c.InHostGroup(s.Hosts["h07"], "rack-a") || c.InHostGroup(s.Hosts["h07"], "nope") {
		t.Error("InHostGroup of a new host")
	}
	vm := policytest.AddVM(s, "web-9", "h01", 1, cluster.PoweredOn)
	if got := c.GroupsOf(vm); !reflect.DeepEqual(got, []string{"web", "short"}) {
		t.Errorf("GroupsOf(new VM) = %v, want [web short]", got)
	}
}

// TestCompileIgnoresBadReferences compiles a document that was not
// validated: rules and budgets naming unknown groups are left out.
func TestCompileIgnoresBadReferences(t *testing.T) {
	s := groupsState()
	d := policy.Default()
	d.VMGroups = []policy.VMGroup{{Name: "web", Pattern: "web-*"}}
	d.Rules = []policy.Rule{
		{Name: "a", Type: policy.RuleVMHostAffinity, VMGroup: "web", HostGroup: "gone", Enforcement: policy.Must},
		{Name: "b", Type: policy.RuleVMAffinity, VMGroup: "gone", Enforcement: policy.Must},
		{Name: "c", Type: "sideways", VMGroup: "web", Enforcement: policy.Must},
	}
	d.DisruptionBudgets = []policy.DisruptionBudget{{VMGroup: "gone", MaxMigrating: 1}}
	c := Compile(d, s)
	if r := c.RulesFor(s.VMs["web-1"]); len(r) != 0 {
		t.Errorf("RulesFor = %v, want none", r)
	}
	if p := Place(s, s.Usage(), nil, s.VMs["web-1"], Options{Policy: c}); p.Host == "" {
		t.Errorf("Place = %s", p.Explain())
	}
	if Compile(nil, s).Document().Placement.Strategy != policy.StrategySpread {
		t.Error("Compile(nil) is not the default policy")
	}
}

// TestMatcher checks the fast paths against path.Match.
func TestMatcher(t *testing.T) {
	names := []string{"", "web", "web-", "web-1", "web-12", "a/web-1", "web-1/x", "db-1", "x-1", "-1", "web-a", "WEB-1"}
	for _, p := range []string{"web", "web-*", "*-1", "web-?", "*", "web-[0-9]", "*web*", `web-\*`, "w*-1"} {
		m := newMatcher(p)
		for _, n := range names {
			want, _ := path.Match(p, n)
			if got := m.matches(n); got != want {
				t.Errorf("pattern %q, name %q: matches = %v, path.Match = %v (kind %c)", p, n, got, want, m.kind)
			}
		}
	}
}

func TestGroupSetsGrow(t *testing.T) {
	var hs hostSet
	hosts := make([]*cluster.Host, 20)
	for i := range hosts {
		hosts[i] = &cluster.Host{Name: fmt.Sprint("h", i)}
		if i%2 == 0 {
			hs.add(hosts[i])
			hs.add(hosts[i])
		}
	}
	hs.add(nil)
	for i, h := range hosts {
		if hs.has(h) != (i%2 == 0) {
			t.Errorf("has(%s) = %v", h.Name, hs.has(h))
		}
	}
}
