package placement

import (
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy/policytest"
)

// BenchmarkPlace10000Hosts places one running VM among 10,000 hosts holding
// 20 VMs each, with 100 moves in flight. Target: under 1 ms/op.
func BenchmarkPlace10000Hosts(b *testing.B) {
	s := policytest.Inventory(10000, 20, 20, 1024, 1)
	usage := s.Usage()
	l := NewLedger()
	names := s.HostNames()
	for i := 0; i < 100; i++ {
		l.Reserve("moving"+names[i], names[i], names[(i*97+5)%len(names)], 8*policytest.GiB)
	}
	vm := s.VMsOn(names[0])[0]
	o := Options{MemoryReserve: 0.1, MaxInFlightTo: 2}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if p := Place(s, usage, l, vm, o); p.Host == "" {
			b.Fatal(p.Explain())
		}
	}
}

// BenchmarkPrecheck500VMs prechecks a host of 500 VMs in an inventory of
// 2,000 hosts and 40,000 VMs. Target: under 20 ms/op.
func BenchmarkPrecheck500VMs(b *testing.B) {
	s := policytest.Inventory(2000, 20, 500, 1024, 2)
	if n := len(s.VMs); n < 40000 {
		b.Fatalf("inventory has %d VMs", n)
	}
	req := EvacuationRequest{Host: "h0001", Migrate: MigrateAll}
	l := NewLedger()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := PrecheckEvacuation(s, l, req, Options{MemoryReserve: 0.1})
		if !p.OK() || len(p.LiveMigrate)+len(p.OfflineMigrate) != 500 {
			b.Fatalf("precheck: %d live, %d offline, blockers %v", len(p.LiveMigrate), len(p.OfflineMigrate), p.Blockers)
		}
	}
}

// BenchmarkMakespan simulates evacuating 120 VMs of 1–32 GiB among 24 hosts
// with the default limits (1 s per GiB plus 5 s) and reports
// makespan/lowerbound. Target: at most 1.10.
func BenchmarkMakespan(b *testing.B) {
	for _, bc := range []struct {
		name   string
		hosts  int
		vms    int
		limits Limits
	}{
		{"defaults-120vms-24hosts", 24, 120, DefaultLimits()},
		{"wide-300vms-40hosts", 40, 300, Limits{PerSource: 16, PerTarget: 2, Cluster: 16}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := policytest.Inventory(bc.hosts, 5, bc.vms, 4096, 3)
			req := EvacuationRequest{Host: "h01", Migrate: MigrateAll}
			d := func(vm *cluster.VM) time.Duration {
				return 5*time.Second + time.Duration(float64(vm.MemoryBytes)/float64(policytest.GiB)*float64(time.Second))
			}
			var ratio float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ms, lb, err := SimulateEvacuation(s, req, bc.limits, Options{}, d)
				if err != nil {
					b.Fatal(err)
				}
				ratio = float64(ms) / float64(lb)
			}
			if ratio > 1.10 {
				b.Errorf("makespan/lowerbound %.4f above 1.10", ratio)
			}
			b.ReportMetric(ratio, "makespan/lowerbound")
		})
	}
}
