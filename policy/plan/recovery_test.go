package plan

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/vmdef"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/failover"
	"github.com/herd-project/herd/policy/placement"
	"github.com/herd-project/herd/policy/policytest"
)

// recoverable gives a VM a stored definition, so that it can be recreated.
func recoverable(vm *cluster.VM) *cluster.VM {
	vm.Definition = vmdef.New([]byte("<domain><name>" + vm.Name + "</name></domain>"))
	return vm
}

// planSummary is a plan as plain strings: the started steps in order as
// "vm>target", and the blocked ones as "vm:reason", sorted.
func planSummary(p RecoveryPlan) (started, blocked []string) {
	byOrder := map[int]string{}
	for _, s := range p.Steps {
		if s.Order > 0 {
			byOrder[s.Order] = s.VM + ">" + s.Target
		} else {
			blocked = append(blocked, s.VM+":"+s.Blocked)
		}
	}
	for i := 1; i <= len(byOrder); i++ {
		started = append(started, byOrder[i])
	}
	slices.Sort(blocked)
	return started, blocked
}

// failoverAfterPlan is the failover capacity of s with the plan carried
// out: the failed hosts fenced, every started VM on its target.
func failoverAfterPlan(s *cluster.State, p RecoveryPlan, o placement.Options) int {
	after := FailHosts(s, p.Failed)
	after.VMs = maps.Clone(s.VMs)
	for _, st := range p.Steps {
		if st.Order > 0 {
			vm := *after.VMs[st.VM]
			vm.Host = st.Target
			if st.Action == cluster.ActionRecreate {
				vm.Power = cluster.PoweredOn
			}
			after.VMs[st.VM] = &vm
		}
	}
	return failover.Capacity(after, o)
}

// TestPlanRecoveryFailoverAfter: on synthetic inventories the capacity the
// plan counts from the usage it carries along is that of the state after.
func TestPlanRecoveryFailoverAfter(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		s := policytest.Inventory(60, 12, 12, 256, seed)
		for _, vm := range s.VMs {
			recoverable(vm)
		}
		failed := []string{"h01", fmt.Sprintf("h%02d", 10+seed), fmt.Sprintf("h%02d", 30+seed)}
		o := placement.Options{MemoryReserve: 0.1}
		p := Recovery(RecoveryInput{State: s, Usage: s.CountUsage(), Failed: failed, Recovery: policy.Default().Recovery, Options: o})
		if len(p.Steps) != 36 {
			t.Fatalf("seed %d: %d steps", seed, len(p.Steps))
		}
		if want := failoverAfterPlan(s, p, o); p.FailoverAfter != want {
			t.Errorf("seed %d: failover capacity after %d, the state after the plan has %d", seed, p.FailoverAfter, want)
		}
	}
}

// TestPlanRecovery plans the recovery of failed hosts on small clusters of
// 64 GiB hosts (spread: most free memory first) and wants the steps that
// start, in order with their targets, and the blocked ones with their rule.
func TestPlanRecovery(t *testing.T) {
	on, off := cluster.PoweredOn, cluster.PoweredOff
	for _, tc := range []struct {
		name    string
		policy  string // after header
		build   func(s *cluster.State)
		failed  []string
		started []string
		blocked []string
		check   func(t *testing.T, s *cluster.State, p RecoveryPlan)
	}{
		{
			name: "priority, then running before shut off, then memory; every blocking rule",
			policy: "vm_groups:\n  - {name: pinned, vms: [e]}\n  - {name: keep, vms: [d]}\n  - {name: vip, vms: [b], priority: 5}\n" +
				"host_groups:\n  - {name: first, hosts: [h01]}\n" +
				"rules:\n  - {name: e-on-first, type: vm-host-affinity, vm_group: pinned, host_group: first, enforcement: must}\n" +
				"recovery:\n  exclude_vm_groups: [keep]\n",
			build: func(s *cluster.State) {
				recoverable(policytest.AddVM(s, "a", "h01", 8, on))
				recoverable(policytest.AddVM(s, "b", "h01", 16, on))
				recoverable(policytest.AddVM(s, "c", "h01", 4, off))
				recoverable(policytest.AddVM(s, "d", "h01", 2, on))
				recoverable(policytest.AddVM(s, "e", "h01", 2, on))
				recoverable(policytest.AddVM(s, "f", "h01", 100, on))
				policytest.AddVM(s, "g", "h01", 2, on) // no definition stored
				policytest.AddVM(s, "busy2", "h02", 40, on)
				policytest.AddVM(s, "busy3", "h03", 20, on)
			},
			failed:  []string{"h01"},
			started: []string{"b>h04", "a>h04", "c>h03"},
			blocked: []string{"d:excluded", "e:vm-host-affinity", "f:no-capacity", "g:no-definition"},
			check: func(t *testing.T, s *cluster.State, p RecoveryPlan) {
				if p.Recreated != 2 || p.Registered != 1 || p.Blocked != 4 {
					t.Errorf("counts: %d recreated, %d registered, %d blocked", p.Recreated, p.Registered, p.Blocked)
				}
				var order []string
				for _, s := range p.Steps {
					order = append(order, s.VM)
				}
				// The recovery operation's own order (RecoveryItems).
				if got := strings.Join(order, ","); got != "b,f,a,e,g,c,d" {
					t.Errorf("steps in item order %s", got)
				}
				for _, s := range p.Steps {
					switch s.VM {
					case "e":
						if !strings.Contains(s.Why, `rule "e-on-first"`) {
							t.Errorf("e blocked: %q does not name the rule", s.Why)
						}
					case "d":
						if s.Action != cluster.ActionAwaitHost || !s.WasRunning {
							t.Errorf("d: %+v", s)
						}
					case "c":
						if s.Action != cluster.ActionRegister || s.WasRunning {
							t.Errorf("c: %+v", s)
						}
					}
				}
			},
		},
		{
			name:   "anti-affinity sees the recreation in flight before it",
			policy: "vm_groups:\n  - {name: pair, vms: [x, y]}\nrules:\n  - {name: apart, type: vm-anti-affinity, vm_group: pair, enforcement: must}\n",
			build: func(s *cluster.State) {
				recoverable(policytest.AddVM(s, "x", "h01", 8, on)).Priority = 1
				recoverable(policytest.AddVM(s, "y", "h01", 4, on))
				policytest.AddVM(s, "busy3", "h03", 4, on)
				policytest.AddVM(s, "busy4", "h04", 60, on)
			},
			failed:  []string{"h01"},
			started: []string{"x>h02", "y>h03"},
		},
		{
			name: "two hosts: the first one's VMs first, the second's find what is left",
			build: func(s *cluster.State) {
				recoverable(policytest.AddVM(s, "p1", "h01", 40, on))
				recoverable(policytest.AddVM(s, "q1", "h02", 40, on))
				recoverable(policytest.AddVM(s, "q2", "h02", 40, on)).Priority = 9
				recoverable(policytest.AddVM(s, "q3", "h02", 40, on))
			},
			failed:  []string{"h01", "h02"},
			started: []string{"p1>h03", "q2>h04"},
			blocked: []string{"q1:no-capacity", "q3:no-capacity"},
		},
		{
			name: "failover capacity before and after",
			build: func(s *cluster.State) {
				for _, h := range []string{"h01", "h02", "h03", "h04"} {
					recoverable(policytest.AddVM(s, "vm-"+h, h, 30, on))
				}
			},
			failed:  []string{"h01"},
			started: []string{"vm-h01>h02"},
			check: func(t *testing.T, s *cluster.State, p RecoveryPlan) {
				if now := failover.Capacity(s, placement.Options{}); now != 2 || p.FailoverAfter != 1 {
					t.Errorf("failover capacity %d before, %d after; want 2, 1", now, p.FailoverAfter)
				}
			},
		},
		{
			name:   "a disruption budget passes a step over until a recreation ends",
			policy: "vm_groups:\n  - {name: web, vms: [w1, w2]}\ndisruption_budgets:\n  - {vm_group: web, max_migrating: 1}\n",
			build: func(s *cluster.State) {
				recoverable(policytest.AddVM(s, "w1", "h01", 8, on)).Priority = 2
				recoverable(policytest.AddVM(s, "w2", "h01", 8, on)).Priority = 2
				recoverable(policytest.AddVM(s, "z", "h01", 8, on))
			},
			failed:  []string{"h01"},
			started: []string{"w1>h02", "z>h03", "w2>h04"},
		},
		{
			name:   "one at a time: each placed with the ones before landed",
			policy: "recovery:\n  concurrency: 1\n",
			build: func(s *cluster.State) {
				recoverable(policytest.AddVM(s, "m1", "h01", 8, on))
				recoverable(policytest.AddVM(s, "m2", "h01", 4, on))
			},
			failed:  []string{"h01"},
			started: []string{"m1>h02", "m2>h03"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := policy.Parse("p.yaml", []byte(header+tc.policy))
			if err != nil {
				t.Fatal(err)
			}
			s := policytest.NewCluster(4, 64)
			tc.build(s)
			before := fmt.Sprint(len(s.VMs), s.Usage())
			comp := placement.Compile(d, s)
			p := Recovery(RecoveryInput{State: s, Failed: tc.failed, Policy: comp, Recovery: d.Recovery, Options: placement.Options{Policy: comp}})
			started, blocked := planSummary(p)
			if !slices.Equal(started, tc.started) || !slices.Equal(blocked, tc.blocked) {
				t.Errorf("started %v blocked %v\nwant    %v blocked %v", started, blocked, tc.started, tc.blocked)
			}
			if tc.check != nil {
				tc.check(t, s, p)
			}
			if want := failoverAfterPlan(s, p, placement.Options{Policy: comp}); p.FailoverAfter != want {
				t.Errorf("failover capacity after %d, the state after the plan has %d", p.FailoverAfter, want)
			}
			if after := fmt.Sprint(len(s.VMs), s.Usage()); after != before || s.Hosts["h01"].Health != cluster.HealthAlive {
				t.Errorf("planning changed the state")
			}
		})
	}
}

// BenchmarkSimulateFailure3of2000 plans the recovery of three hosts of 20
// VMs each in 2,000 hosts and 40,000 VMs, with the failover capacity
// after. Target: under 100 ms/op.
func BenchmarkSimulateFailure3of2000(b *testing.B) {
	s := policytest.Inventory(2000, 20, 20, 1024, 4)
	for _, vm := range s.VMs {
		recoverable(vm)
	}
	if n := len(s.VMs); n < 40000 {
		b.Fatalf("inventory has %d VMs", n)
	}
	d := policy.Default()
	comp := placement.Compile(d, s)
	failed := []string{"h0001", "h0500", "h1999"}
	usage := s.CountUsage() // the daemon passes the usage the FSM keeps
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := Recovery(RecoveryInput{State: s, Usage: usage, Failed: failed, Policy: comp, Recovery: d.Recovery, Options: placement.Options{Policy: comp, MemoryReserve: 0.1}})
		if len(p.Steps) != 60 || p.Blocked != 0 {
			b.Fatalf("plan: %d steps, %d blocked", len(p.Steps), p.Blocked)
		}
	}
}
