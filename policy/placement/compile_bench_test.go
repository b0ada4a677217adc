package placement

import (
	"fmt"
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/policytest"
)

// labelRacks labels every host with rack r0…r9 by its position.
func labelRacks(s *cluster.State) {
	for i, n := range s.HostNames() {
		policytest.SetHost(s, n, func(h *cluster.Host) { h.Labels = map[string]string{"rack": fmt.Sprintf("r%d", i%10)} })
	}
}

// benchPolicy is a policy of a few groups and rules over inventory names:
// host groups by selector and by list, VM groups by pattern and by list.
func benchPolicy(b testing.TB, hosts []string) *policy.Document {
	y := fmt.Sprintf(`apiVersion: herd/v1
kind: Policy
host_groups:
  - name: rack-1
    selector: {rack: r1}
  - name: rack-2
    selector: {rack: r2}
  - name: special
    hosts: [%s, %s, %s]
vm_groups:
  - name: first
    pattern: vm00000*
    priority: 5
  - name: hundreds
    pattern: vm0001??
  - name: pair
    vms: [vm000001, vm000002]
  - name: odd
    pattern: "vm*[13579]"
placement:
  cpu_overcommit: 4
rules:
  - {name: first-apart, type: vm-anti-affinity, vm_group: first, enforcement: must}
  - {name: first-not-special, type: vm-host-anti-affinity, vm_group: first, host_group: special, enforcement: must}
  - {name: first-in-rack-1, type: vm-host-affinity, vm_group: first, host_group: rack-1, enforcement: should, weight: 20}
  - {name: pair-together, type: vm-affinity, vm_group: pair, enforcement: should}
  - {name: hundreds-in-rack-2, type: vm-host-affinity, vm_group: hundreds, host_group: rack-2, enforcement: must}
disruption_budgets:
  - {vm_group: first, max_migrating: 3}
`, hosts[1], hosts[2], hosts[3])
	d, err := policy.Parse("bench.yaml", []byte(y))
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkCompile compiles a policy of a few groups and rules against
// 2,000 hosts and about 40,000 VMs. Target: well under 100 ms/op.
func BenchmarkCompile(b *testing.B) {
	s := policytest.Inventory(2000, 20, 20, 1024, 2)
	labelRacks(s)
	d := benchPolicy(b, s.HostNames())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := Compile(d, s)
		if len(c.VMsIn("odd")) == 0 || len(c.HostsIn("rack-1")) != 200 {
			b.Fatalf("compiled %d odd VMs, %d rack-1 hosts", len(c.VMsIn("odd")), len(c.HostsIn("rack-1")))
		}
	}
}

// BenchmarkPlace10000HostsRules is BenchmarkPlace10000Hosts with a policy:
// the VM placed has a must anti-affinity, a must host-anti-affinity, a
// should host-affinity, a budget, and a CPU overcommit limit. Target: under
// 1 ms/op.
func BenchmarkPlace10000HostsRules(b *testing.B) {
	s := policytest.Inventory(10000, 20, 20, 1024, 1)
	labelRacks(s)
	names := s.HostNames()
	c := Compile(benchPolicy(b, names), s)
	usage := s.Usage()
	l := NewLedger()
	for i := 0; i < 100; i++ {
		l.Reserve("moving"+names[i], names[i], names[(i*97+5)%len(names)], 8*policytest.GiB)
	}
	l.Reserve("vm000003", names[0], names[7], 8*policytest.GiB)
	vm := s.VMs["vm000001"]
	for _, bc := range []struct {
		name   string
		policy *Compiled
	}{{"no-policy", nil}, {"policy", c}} {
		b.Run(bc.name, func(b *testing.B) {
			o := Options{MemoryReserve: 0.1, MaxInFlightTo: 2, Policy: bc.policy}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if p := Place(s, usage, l, vm, o); p.Host == "" {
					b.Fatal(p.Explain())
				}
			}
		})
	}
}
