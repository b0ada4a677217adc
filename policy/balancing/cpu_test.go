package balancing

import (
	"math"
	"strings"
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/placement"
	"github.com/herd-project/herd/policy/policytest"
)

// cpuCluster has three hosts of 100 GiB and 64 CPUs with 30 GiB used each:
// balanced by memory. By CPU h01 is at 90% and the others at 30%; h01's
// VMs have 8, 4, 2 and 2 vCPUs, so they take 45%, 22.5%, 11.25% and 11.25%
// of its CPUs.
func cpuCluster() (*cluster.State, map[string]float64) {
	s := policytest.Build(100, []int64{12, 6, 6, 6}, []int64{30}, []int64{30})
	for id, vcpus := range map[string]int{"vm001": 8, "vm002": 4, "vm003": 2, "vm004": 2, "vm005": 4, "vm006": 4} {
		policytest.SetVM(s, id, func(vm *cluster.VM) { vm.VCPUs = vcpus })
	}
	return s, map[string]float64{"h01": 0.9, "h02": 0.3, "h03": 0.3}
}

func TestPlanBalanceCPU(t *testing.T) {
	s, cpu := cpuCluster()
	pol := even(0.1)
	pol.Metric = policy.BalanceByCPU
	if p := Compute(Input{State: s, Policy: even(0.1), CPU: cpu}); len(p.Moves) != 0 {
		t.Fatalf("by memory the cluster is balanced, got %v", p.Moves)
	}
	p := Compute(Input{State: s, Policy: pol, CPU: cpu})
	checkPlan(t, s, nil, placement.Options{}, p)
	// Line 60%: h01 sheds 30% with the fewest VMs, least load first: the
	// 4-vCPU VM (22.5%) and a 2-vCPU one (11.25%), not the 8-vCPU one.
	if p.Metric != policy.BalanceByCPU || p.Reason != "" || math.Abs(p.Before-0.4) > 1e-9 {
		t.Fatalf("plan %+v", p)
	}
	if len(p.Moves) != 2 || p.Moves[0].VM != "vm002" || p.Moves[1].VM != "vm003" ||
		p.Moves[0].To == p.Moves[1].To || math.Abs(p.After-0.0875) > 1e-9 {
		// 56.25%, 52.5% and 41.25% around a mean of 50%: the lowest is
		// 8.75% under it.
		t.Fatalf("moves %+v, after %.4f; want vm002 and vm003 to h02 and h03, imbalance 0.0875", p.Moves, p.After)
	}
}

func TestPlanBalanceCPUFallsBackToMemory(t *testing.T) {
	s, cpu := cpuCluster()
	pol := even(0.1)
	pol.Metric = policy.BalanceByCPU
	for _, c := range []struct {
		name, host string
		data       map[string]float64
	}{
		{"missing host", "h03", map[string]float64{"h01": 0.9, "h02": 0.3}},
		{"not a number", "h03", map[string]float64{"h01": 0.9, "h02": 0.3, "h03": math.NaN()}},
		{"negative", "h03", map[string]float64{"h01": 0.9, "h02": 0.3, "h03": -1}},
		{"no data", "h01", nil},
	} {
		p := Compute(Input{State: s, Policy: pol, CPU: c.data})
		want := "no cpu data for host " + c.host + ": balanced by memory; balanced: imbalance 0.000"
		if p.Metric != policy.BalanceByMemory || len(p.Moves) != 0 || !strings.HasPrefix(p.Reason, want) {
			t.Errorf("%s: metric %s, moves %v, reason %q", c.name, p.Metric, p.Moves, p.Reason)
		}
	}
	// A host with data but no CPUs cannot be measured either.
	policytest.SetHost(s, "h02", func(h *cluster.Host) { h.CPUs = 0 })
	if p := Compute(Input{State: s, Policy: pol, CPU: cpu}); p.Metric != policy.BalanceByMemory ||
		!strings.HasPrefix(p.Reason, "no cpu data for host h02") {
		t.Errorf("no CPUs: metric %s, reason %q", p.Metric, p.Reason)
	}
	// Data for hosts that cannot take VMs is not needed.
	s, cpu = cpuCluster()
	policytest.AddVM(s, "x", "h04", 1, cluster.PoweredOn)
	s.Hosts["h04"] = &cluster.Host{Name: "h04", Driver: "vc", Group: "g1", Admin: cluster.InMaintenance,
		Maintenance: cluster.MaintenanceOn, Health: cluster.HealthAlive, Connection: cluster.Connected, MemoryBytes: 100 * policytest.GiB, CPUs: 64}
	if p := Compute(Input{State: s, Policy: pol, CPU: cpu}); p.Metric != policy.BalanceByCPU || len(p.Moves) != 2 {
		t.Errorf("closed host without data: metric %s, %d moves, reason %q", p.Metric, len(p.Moves), p.Reason)
	}
}
