package placement

import (
	"maps"
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/policytest"
)

// TestPlaceRules places one 8 GiB VM "vm" from h01 in a cluster of four
// 64 GiB hosts under a policy, and checks Place, its rejections and
// explanation, and PlaceOn for each other host.
func TestPlaceRules(t *testing.T) {
	const vmGroup = "vm_groups:\n  - {name: v, vms: [vm, a, b, c]}\n"
	for _, tc := range []struct {
		name    string
		policy  string
		setup   func(s *cluster.State, l *Ledger)
		opts    Options
		want    string
		rejects map[string]int    // when set, Place's rejections
		explain string            // when set, Place's explanation
		on      map[string]string // PlaceOn host → reason, "" when accepted
	}{
		{name: "must host affinity",
			policy: "host_groups:\n  - {name: g, hosts: [h03]}\n" + vmGroup +
				"rules:\n  - {name: in-g, type: vm-host-affinity, vm_group: v, host_group: g, enforcement: must}\n",
			want: "h03", rejects: map[string]int{ReasonSameHost: 1, ReasonVMHostAffinity: 2},
			on: map[string]string{"h02": ReasonVMHostAffinity, "h03": "", "h04": ReasonVMHostAffinity}},
		{name: "must host affinity by selector",
			policy: "host_groups:\n  - {name: g, selector: {rack: b}}\n" + vmGroup +
				"rules:\n  - {name: in-g, type: vm-host-affinity, vm_group: v, host_group: g, enforcement: must}\n",
			setup: func(s *cluster.State, _ *Ledger) { setLabels(s, "h04", "rack", "b") },
			want:  "h04", on: map[string]string{"h02": ReasonVMHostAffinity, "h04": ""}},
		{name: "must host anti-affinity",
			policy: "host_groups:\n  - {name: g, hosts: [h02, h03]}\n" + vmGroup +
				"rules:\n  - {name: out-g, type: vm-host-anti-affinity, vm_group: v, host_group: g, enforcement: must}\n",
			want: "h04", rejects: map[string]int{ReasonSameHost: 1, ReasonVMHostAntiAffinity: 2},
			on: map[string]string{"h02": ReasonVMHostAntiAffinity, "h04": ""}},
		{name: "must anti-affinity: running and moving members count, stopped ones not",
			policy: vmGroup + "rules:\n  - {name: apart, type: vm-anti-affinity, vm_group: v, enforcement: must}\n",
			setup: func(s *cluster.State, l *Ledger) {
				policytest.AddVM(s, "a", "h02", 1, cluster.PoweredOn)
				policytest.AddVM(s, "b", "h03", 1, cluster.PoweredOff)
				policytest.AddVM(s, "c", "h01", 1, cluster.PoweredOn)
				l.Reserve("c", "h01", "h04", policytest.GiB)
			},
			want: "h03", rejects: map[string]int{ReasonSameHost: 1, ReasonVMAntiAffinity: 2},
			on: map[string]string{"h02": ReasonVMAntiAffinity, "h03": "", "h04": ReasonVMAntiAffinity}},
		{name: "must affinity: the host with most members",
			policy: vmGroup + "rules:\n  - {name: together, type: vm-affinity, vm_group: v, enforcement: must}\n",
			setup: func(s *cluster.State, _ *Ledger) {
				policytest.AddVM(s, "a", "h03", 1, cluster.PoweredOn)
				policytest.AddVM(s, "b", "h03", 1, cluster.PoweredOn)
				policytest.AddVM(s, "c", "h02", 1, cluster.PoweredOn)
			},
			want: "h03", rejects: map[string]int{ReasonSameHost: 1, ReasonVMAffinity: 2},
			on: map[string]string{"h02": ReasonVMAffinity, "h03": ""}},
		{name: "must affinity: moving members count where they go",
			policy: vmGroup + "rules:\n  - {name: together, type: vm-affinity, vm_group: v, enforcement: must}\n",
			setup: func(s *cluster.State, l *Ledger) {
				policytest.AddVM(s, "a", "h02", 1, cluster.PoweredOn)
				policytest.AddVM(s, "b", "h02", 1, cluster.PoweredOn)
				policytest.AddVM(s, "c", "h03", 1, cluster.PoweredOn)
				l.Reserve("a", "h02", "h04", policytest.GiB)
				l.Reserve("b", "h02", "h04", policytest.GiB)
			},
			want: "h04", on: map[string]string{"h02": ReasonVMAffinity, "h03": ReasonVMAffinity, "h04": ""}},
		{name: "must affinity: the group is with it",
			policy:  vmGroup + "rules:\n  - {name: together, type: vm-affinity, vm_group: v, enforcement: must}\n",
			setup:   func(s *cluster.State, _ *Ledger) { policytest.AddVM(s, "a", "h01", 1, cluster.PoweredOn) },
			explain: `no target: 3 hosts vm-affinity (rule "together"), 1 host same-host`,
			on:      map[string]string{"h02": ReasonVMAffinity}},
		{name: "must affinity: members on a host being emptied do not anchor",
			policy: vmGroup + "rules:\n  - {name: together, type: vm-affinity, vm_group: v, enforcement: must}\n",
			setup: func(s *cluster.State, _ *Ledger) {
				policytest.AddVM(s, "a", "h01", 1, cluster.PoweredOn)
				policytest.SetHost(s, "h01", func(h *cluster.Host) { h.Maintenance = cluster.MaintenanceEntering })
			},
			want: "h02", rejects: map[string]int{ReasonSameHost: 1}},
		{name: "should host affinity beats spread",
			policy: "host_groups:\n  - {name: g, hosts: [h04]}\n" + vmGroup +
				"rules:\n  - {name: in-g, type: vm-host-affinity, vm_group: v, host_group: g, enforcement: should}\n",
			setup: func(s *cluster.State, _ *Ledger) { policytest.AddVM(s, "x", "h04", 40, cluster.PoweredOn) },
			want:  "h04", on: map[string]string{"h02": "", "h04": ""}},
		{name: "should rules add up: heavier host affinity wins",
			policy: "host_groups:\n  - {name: g, hosts: [h02]}\n" + vmGroup + `rules:
  - {name: in-g, type: vm-host-affinity, vm_group: v, host_group: g, enforcement: should, weight: 50}
  - {name: apart, type: vm-anti-affinity, vm_group: v, enforcement: should, weight: 10}
`,
			setup: func(s *cluster.State, _ *Ledger) { policytest.AddVM(s, "a", "h02", 1, cluster.PoweredOn) },
			want:  "h02"},
		{name: "should rules add up: heavier anti-affinity wins",
			policy: "host_groups:\n  - {name: g, hosts: [h02]}\n" + vmGroup + `rules:
  - {name: in-g, type: vm-host-affinity, vm_group: v, host_group: g, enforcement: should, weight: 10}
  - {name: apart, type: vm-anti-affinity, vm_group: v, enforcement: should, weight: 50}
`,
			setup: func(s *cluster.State, _ *Ledger) { policytest.AddVM(s, "a", "h02", 1, cluster.PoweredOn) },
			want:  "h03"},
		{name: "must beats should",
			policy: "host_groups:\n  - {name: g, hosts: [h02]}\n" + vmGroup + `rules:
  - {name: in-g, type: vm-host-affinity, vm_group: v, host_group: g, enforcement: should, weight: 100}
  - {name: apart, type: vm-anti-affinity, vm_group: v, enforcement: must}
`,
			setup: func(s *cluster.State, _ *Ledger) { policytest.AddVM(s, "a", "h02", 1, cluster.PoweredOn) },
			want:  "h03", on: map[string]string{"h02": ReasonVMAntiAffinity}},
		{name: "cpu overcommit: running and moving vCPUs count",
			policy: "placement: {cpu_overcommit: 0.5}\n", // 32 vCPUs on 64 CPUs
			setup: func(s *cluster.State, l *Ledger) {
				for i := 0; i < 16; i++ {
					policytest.AddVM(s, "r2-"+string(rune('a'+i)), "h02", 1, cluster.PoweredOn) // 2 vCPUs each: full
					policytest.AddVM(s, "s4-"+string(rune('a'+i)), "h04", 1, cluster.PoweredOff)
				}
				for i := 0; i < 15; i++ {
					policytest.AddVM(s, "r3-"+string(rune('a'+i)), "h03", 1, cluster.PoweredOn)
				}
				policytest.AddVM(s, "mv", "h04", 1, cluster.PoweredOn)
				l.Reserve("mv", "h04", "h03", policytest.GiB)
			},
			want: "h04", rejects: map[string]int{ReasonSameHost: 1, ReasonCPUOvercommit: 2},
			on: map[string]string{"h02": ReasonCPUOvercommit, "h03": ReasonCPUOvercommit, "h04": ""}},
		{name: "cpu overcommit from options",
			opts:    Options{CPUOvercommit: 0.03}, // 1.92 vCPUs: a 2-vCPU VM fits nowhere
			explain: "no target: 3 hosts cpu-overcommit, 1 host same-host"},
		{name: "disruption budget spent",
			policy: vmGroup + "disruption_budgets:\n  - {vm_group: v, max_migrating: 2}\n",
			setup: func(s *cluster.State, l *Ledger) {
				policytest.AddVM(s, "a", "h02", 1, cluster.PoweredOn)
				policytest.AddVM(s, "b", "h02", 1, cluster.PoweredOn)
				l.Reserve("a", "h02", "h03", policytest.GiB)
				l.Reserve("b", "h02", "h04", policytest.GiB)
			},
			explain: `no target: 3 hosts disruption-budget (vm group "v" has 2 of 2 migrating), 1 host same-host`,
			on:      map[string]string{"h02": ReasonDisruptionBudget}},
		{name: "disruption budget not spent",
			policy: vmGroup + "disruption_budgets:\n  - {vm_group: v, max_migrating: 2}\n",
			setup: func(s *cluster.State, l *Ledger) {
				policytest.AddVM(s, "a", "h02", 1, cluster.PoweredOn)
				l.Reserve("a", "h02", "h03", policytest.GiB)
				l.Reserve("other", "h02", "h03", policytest.GiB)
			},
			want: "h04"},
		{name: "pack: least free share after placing",
			policy: "placement: {strategy: pack}\n",
			setup: func(s *cluster.State, _ *Ledger) {
				policytest.AddVM(s, "x", "h02", 20, cluster.PoweredOn)
				policytest.AddVM(s, "y", "h03", 40, cluster.PoweredOn)
			},
			want: "h03"},
		{name: "pack counts reservations and skips hosts that do not fit",
			policy: "placement: {strategy: pack}\n",
			setup: func(s *cluster.State, l *Ledger) {
				policytest.AddVM(s, "x", "h02", 20, cluster.PoweredOn)
				policytest.AddVM(s, "y", "h03", 60, cluster.PoweredOn)
				l.Reserve("z", "h01", "h04", 30*policytest.GiB)
			},
			want: "h04", rejects: map[string]int{ReasonSameHost: 1, ReasonInsufficientMemory: 1}},
		{name: "options override the policy's strategy",
			policy: "placement: {strategy: pack}\n", opts: Options{Strategy: policy.StrategySpread},
			setup: func(s *cluster.State, _ *Ledger) {
				policytest.AddVM(s, "x", "h02", 20, cluster.PoweredOn)
				policytest.AddVM(s, "y", "h03", 40, cluster.PoweredOn)
			},
			want: "h04"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := policytest.NewCluster(4, 64)
			l := NewLedger()
			if tc.setup != nil {
				tc.setup(s, l)
			}
			vm := policytest.AddVM(s, "vm", "h01", 8, cluster.PoweredOn)
			o := tc.opts
			o.Policy = mustCompile(t, s, tc.policy)
			for i := 0; i < 10; i++ { // map order must not matter
				p := Place(s, s.Usage(), l, vm, o)
				if p.Host != tc.want {
					t.Fatalf("Place = %q (%s), want %q", p.Host, p.Explain(), tc.want)
				}
				if tc.rejects != nil && !maps.Equal(p.Rejections, tc.rejects) {
					t.Fatalf("rejections = %v, want %v", p.Rejections, tc.rejects)
				}
				if tc.explain != "" && p.Explain() != tc.explain {
					t.Fatalf("Explain() = %q, want %q", p.Explain(), tc.explain)
				}
				if want := tc.explain != "" && p.Rejections[ReasonDisruptionBudget] > 0; p.Transient() != want {
					t.Fatalf("Transient() = %v, want %v", p.Transient(), want)
				}
			}
			for host, reason := range tc.on {
				p := PlaceOn(s, s.Usage(), l, vm, host, o)
				if reason == "" && p.Host != host || reason != "" && (p.Host != "" || p.Rejections[reason] != 1) {
					t.Errorf("PlaceOn(%s) = %+v, want %q", host, p, reason)
				}
			}
		})
	}
}

// TestExplainDetail names the rules and budget behind rejections.
func TestExplainDetail(t *testing.T) {
	var tl tally
	tl.add(rVMHostAffinity, "a")
	tl.add(rVMHostAffinity, "b")
	tl.add(rVMHostAffinity, "a")
	tl.add(rVMAntiAffinity, "c")
	tl.add(rSameHost, "")
	tl.budget = `vm group "v" has 1 of 1 migrating`
	tl.add(rDisruptionBudget, "")
	p := tl.placement("")
	want := `no target: 3 hosts vm-host-affinity (rules "a", "b"), 1 host disruption-budget (vm group "v" has 1 of 1 migrating), ` +
		`1 host same-host, 1 host vm-anti-affinity (rule "c")`
	if got := p.Explain(); got != want || !p.Transient() {
		t.Errorf("Explain() = %q, transient %v\nwant %q", got, p.Transient(), want)
	}
}
