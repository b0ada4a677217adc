package failover

import (
	"testing"

	"github.com/herd-project/herd/policy/placement"
	"github.com/herd-project/herd/policy/policytest"
)

// BenchmarkFailoverCapacity computes the failover capacity of 2,000 hosts of
// 640 GiB holding 40,000 VMs of 1–32 GiB with uneven load. Target: under
// 100 ms/op.
func BenchmarkFailoverCapacity(b *testing.B) {
	s := policytest.UnevenCluster(2000, 40000, 640, policytest.UniformSizes, 1)
	o := placement.Options{MemoryReserve: 0.1}
	var k int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k = Capacity(s, o)
	}
	b.ReportMetric(float64(k), "hosts")
}

// BenchmarkFailoverAfterMaintenance is the same with one host closed first.
func BenchmarkFailoverAfterMaintenance(b *testing.B) {
	s := policytest.UnevenCluster(2000, 40000, 640, policytest.UniformSizes, 1)
	o := placement.Options{MemoryReserve: 0.1}
	var k int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k = AfterMaintenance(s, "h0001", o)
	}
	b.ReportMetric(float64(k), "hosts")
}
