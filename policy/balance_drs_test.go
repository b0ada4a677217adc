package policy

import (
	"testing"

	"github.com/herd-project/herd/cluster"
)

// A VM with a weight-100 should affinity to its host is not moved for a
// gain of 0.016; without the rule it is.
func TestBalanceKeepsShouldRules(t *testing.T) {
	s := newCluster(3, 100)
	addVMBytes(s, "stay", "h01", 16*gib/10, cluster.PoweredOn)
	addVM(s, "big", "h01", 30, cluster.PoweredOn)
	addVM(s, "b2", "h02", 28, cluster.PoweredOn)
	addVMBytes(s, "b3", "h03", 284*gib/10, cluster.PoweredOn)
	pol := BalancingPolicy{Strategy: BalanceEven, Metric: BalanceByMemory, Threshold: 0.01, MinGain: 0.01}
	for _, tc := range []struct {
		name, rules string
		moves       int
	}{
		{"no rule", "", 1},
		{"should weight 100", `host_groups: [{name: home, hosts: [h01]}]
vm_groups: [{name: pinned, vms: [stay]}]
rules:
  - {name: at-home, type: vm-host-affinity, vm_group: pinned, host_group: home, enforcement: should, weight: 100}
`, 0},
		{"should weight 1", `host_groups: [{name: home, hosts: [h01]}]
vm_groups: [{name: pinned, vms: [stay]}]
rules:
  - {name: at-home, type: vm-host-affinity, vm_group: pinned, host_group: home, enforcement: should, weight: 1}
`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := BalanceInput{State: s, Policy: pol, Options: Options{Policy: mustCompile(t, s, tc.rules)}}
			p := PlanBalance(in)
			checkPlan(t, s, nil, in.Options, p)
			if len(p.Moves) != tc.moves {
				t.Fatalf("moves %+v (%s), want %d", p.Moves, p.Reason, tc.moves)
			}
			if tc.moves == 1 && (p.Moves[0].VM != "stay" || p.Moves[0].Gain < 0.0159 || p.Moves[0].Gain > 0.0161) {
				t.Fatalf("move %+v, want stay with a gain of 0.016", p.Moves[0])
			}
		})
	}
}
