package placement

import (
	"reflect"
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy/policytest"
)

const precheckPolicy = `host_groups:
  - {name: gpu, hosts: [h04]}
vm_groups:
  - {name: db, vms: [db-1, db-2]}
  - {name: ml, pattern: ml-*}
  - {name: web, pattern: web-*}
rules:
  - {name: db-apart, type: vm-anti-affinity, vm_group: db, enforcement: must}
  - {name: ml-on-gpu, type: vm-host-affinity, vm_group: ml, host_group: gpu, enforcement: must}
  - {name: web-together, type: vm-affinity, vm_group: web, enforcement: must}
disruption_budgets:
  - {vm_group: web, max_migrating: 1}
`

// precheckState has five 64 GiB hosts; h01, to evacuate, holds two db VMs
// that must stay apart, an ml VM that must run on h04 and two web VMs that
// must stay together; web-3 of the same group runs on h05.
func precheckState() *cluster.State {
	s := policytest.NewCluster(5, 64)
	for _, v := range []struct {
		id   string
		host string
		gib  int64
	}{{"db-1", "h01", 16}, {"db-2", "h01", 16}, {"ml-1", "h01", 8}, {"web-1", "h01", 4}, {"web-2", "h01", 4}, {"web-3", "h05", 4}} {
		policytest.AddVM(s, v.id, v.host, v.gib, cluster.PoweredOn)
	}
	return s
}

// TestPrecheckKeepsMustRules plans the evacuation of h01: the targets keep
// every must rule, counting the moves planned before them, and budgets
// (timing, not capacity) do not block the plan.
func TestPrecheckKeepsMustRules(t *testing.T) {
	s := precheckState()
	o := Options{Policy: mustCompile(t, s, precheckPolicy)}
	p := PrecheckEvacuation(s, nil, EvacuationRequest{Host: "h01", Migrate: MigrateAll}, o)
	if !p.OK() || len(p.LiveMigrate) != 5 {
		t.Fatalf("precheck: %+v", p)
	}
	to := map[string]string{}
	for _, it := range p.LiveMigrate {
		to[it.VM] = it.Target
	}
	if to["db-1"] == to["db-2"] {
		t.Errorf("db-1 and db-2 both planned to %s", to["db-1"])
	}
	if to["ml-1"] != "h04" {
		t.Errorf("ml-1 planned to %s, want h04", to["ml-1"])
	}
	if to["web-1"] != "h05" || to["web-2"] != "h05" {
		t.Errorf("web-1, web-2 planned to %s, %s; want both with web-3 on h05", to["web-1"], to["web-2"])
	}
}

// TestPrecheckRuleBlockers lists the blockers that rules make.
func TestPrecheckRuleBlockers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(s *cluster.State, l *Ledger)
		req    EvacuationRequest
		policy string
		want   []Blocker
	}{
		{name: "an affinity member is migrating elsewhere",
			setup: func(_ *cluster.State, l *Ledger) { l.Reserve("web-3", "h05", "h02", 4*policytest.GiB) },
			want: []Blocker{
				{VM: "web-1", Name: "web-1", Reason: `must vm-affinity rule "web-together": web-3, of the same vm group "web", is migrating from h05 to h02; evacuate once it has arrived`},
				{VM: "web-2", Name: "web-2", Reason: `must vm-affinity rule "web-together": web-3, of the same vm group "web", is migrating from h05 to h02; evacuate once it has arrived`},
			}},
		{name: "an affinity member leaving the same host does not block",
			setup: func(_ *cluster.State, l *Ledger) { l.Reserve("web-1", "h01", "h05", 4*policytest.GiB) }},
		{name: "a should affinity does not block",
			setup:  func(_ *cluster.State, l *Ledger) { l.Reserve("web-3", "h05", "h02", 4*policytest.GiB) },
			policy: "vm_groups:\n  - {name: web, pattern: web-*}\nrules:\n  - {name: web-together, type: vm-affinity, vm_group: web, enforcement: should}\n"},
		{name: "no host keeps the must rules",
			setup: func(s *cluster.State, _ *Ledger) {
				policytest.SetHost(s, "h04", func(h *cluster.Host) { h.Maintenance = cluster.MaintenanceOn })
			},
			want: []Blocker{{VM: "ml-1", Name: "ml-1", Reason: `no target: 3 hosts vm-host-affinity (rule "ml-on-gpu"), 1 host maintenance, 1 host same-host`}}},
		{name: "an explicit target breaks a must rule",
			req: EvacuationRequest{Host: "h01", Migrate: MigrateAll, TargetHost: "h03"},
			want: []Blocker{
				{VM: "db-2", Name: "db-2", Reason: `no target: 1 host vm-anti-affinity (rule "db-apart")`},
				{VM: "ml-1", Name: "ml-1", Reason: `no target: 1 host vm-host-affinity (rule "ml-on-gpu")`},
				{VM: "web-1", Name: "web-1", Reason: `no target: 1 host vm-affinity (rule "web-together")`},
				{VM: "web-2", Name: "web-2", Reason: `no target: 1 host vm-affinity (rule "web-together")`},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := precheckState()
			l := NewLedger()
			if tc.setup != nil {
				tc.setup(s, l)
			}
			policy := tc.policy
			if policy == "" {
				policy = precheckPolicy
			}
			req := tc.req
			if req.Host == "" {
				req = EvacuationRequest{Host: "h01", Migrate: MigrateAll}
			}
			p := PrecheckEvacuation(s, l, req, Options{Policy: mustCompile(t, s, policy)})
			want := tc.want
			if want == nil {
				want = []Blocker{}
			}
			if !reflect.DeepEqual(p.Blockers, want) {
				t.Errorf("blockers:\n got %+v\nwant %+v", p.Blockers, want)
			}
		})
	}
}

// TestNextTargetWaitsForBudget: a VM whose group is at its disruption
// budget waits (Transient) and goes once a member arrives.
func TestNextTargetWaitsForBudget(t *testing.T) {
	s := precheckState()
	policytest.SetHost(s, "h01", func(h *cluster.Host) { h.Maintenance = cluster.MaintenanceEntering })
	o := Options{Policy: mustCompile(t, s, precheckPolicy), MaxInFlightTo: 2}
	l := NewLedger()
	usage := s.Usage()
	req := EvacuationRequest{Host: "h01", Migrate: MigrateAll}
	first := NextTarget(s, usage, l, s.VMs["web-1"], req, nil, o)
	if first.Host != "h05" {
		t.Fatalf("web-1: %s, want h05 (with web-3)", first.Explain())
	}
	l.Reserve("web-1", "h01", first.Host, 4*policytest.GiB)
	p := NextTarget(s, usage, l, s.VMs["web-2"], req, nil, o)
	if p.Host != "" || !p.Transient() || p.Rejections[ReasonDisruptionBudget] == 0 {
		t.Fatalf("web-2 while web-1 moves: %+v, want a transient disruption-budget rejection", p)
	}
	l.Release("web-1")
	policytest.SetVM(s, "web-1", func(vm *cluster.VM) { vm.Host = "h05" })
	if p := NextTarget(s, s.Usage(), l, s.VMs["web-2"], req, nil, o); p.Host != "h05" {
		t.Fatalf("web-2 after web-1 arrived: %s, want h05", p.Explain())
	}
}
