package plan

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy/placement"
	"github.com/herd-project/herd/policy/policytest"
)

// TestPlanRolloutWavesAndLedger: 4 hosts of 64 GiB, in waves of 2; the VMs
// of the first wave go to the hosts still in, and those of the second wave
// may use the first wave's hosts (now back, emptied) but never a host out
// in the same wave.
func TestPlanRolloutWavesAndLedger(t *testing.T) {
	s := policytest.NewCluster(4, 64)
	policytest.AddVM(s, "a1", "h01", 8, cluster.PoweredOn)
	policytest.AddVM(s, "a2", "h01", 4, cluster.PoweredOff)
	policytest.AddVM(s, "b1", "h02", 16, cluster.PoweredOn)
	policytest.AddVM(s, "c1", "h03", 8, cluster.PoweredOn)
	policytest.AddVM(s, "c2", "h03", 8, cluster.PoweredOn)
	policytest.AddVM(s, "d1", "h04", 2, cluster.PoweredOn)
	p := Rollout(s, RolloutRequest{Hosts: []string{"h01", "h02", "h03", "h04"}, Parallel: 2, Order: OrderListed,
		History: MigrationHistory{Count: 4, Seconds: 40}}, placement.Options{})
	if !p.OK() || len(p.Waves) != 2 || p.Parallel != 2 {
		t.Fatalf("plan: %+v", p)
	}
	if got := strings.Join(p.Waves[0].Hosts, ","); got != "h01,h02" {
		t.Fatalf("wave 1 = %s", got)
	}
	for _, h := range p.Hosts {
		wave := p.Waves[h.Wave-1]
		for _, vm := range h.VMs {
			for _, out := range wave.Hosts {
				if vm.Target == out {
					t.Fatalf("VM %s of %s planned onto %s, which is out in the same wave", vm.Name, h.Host, out)
				}
			}
			if vm.Target == "" {
				t.Fatalf("VM %s of %s has no target", vm.Name, h.Host)
			}
		}
	}
	// The stopped VM is offline-migrated with migrate all (the default).
	if a2 := p.Hosts[0].VMs[1]; a2.Name != "a2" || a2.Action != placement.ActionOfflineMigrate {
		t.Fatalf("a2: %+v", a2)
	}
	// Wave 2 hosts take VMs: some land on wave 1's hosts, which hold what
	// wave 1 left them (nothing) plus what they take now.
	if len(p.Waves[1].Ledger) == 0 {
		t.Fatal("wave 2 has no ledger")
	}
	for _, e := range p.Waves[1].Ledger {
		if e.Host == "h03" || e.Host == "h04" {
			t.Fatalf("ledger of wave 2 lists a host out: %+v", e)
		}
	}
	// Estimate from history: mean 10 s per migration, two per source at
	// a time (per_source 2): wave 1 = max(ceil(2/2), ceil(1/2)) * 10; wave
	// 2 moves the VMs wave 1 put on its hosts too.
	n3 := len(p.Hosts[2].VMs)
	if p.MigrationSeconds != 10 || !p.FromHistory || p.Waves[0].EstimatedSeconds != 10 || n3 < 2 ||
		p.Waves[1].EstimatedSeconds != float64((max(n3, len(p.Hosts[3].VMs))+1)/2*10) || p.EstimatedSeconds != p.Waves[0].EstimatedSeconds+p.Waves[1].EstimatedSeconds {
		t.Fatalf("estimate: per migration %v (history %v), waves %v %v, total %v", p.MigrationSeconds, p.FromHistory,
			p.Waves[0].EstimatedSeconds, p.Waves[1].EstimatedSeconds, p.EstimatedSeconds)
	}
}

func TestPlanRolloutBlockers(t *testing.T) {
	s := policytest.NewCluster(3, 32)
	policytest.AddVM(s, "big", "h01", 30, cluster.PoweredOn)
	policytest.AddVM(s, "big2", "h02", 30, cluster.PoweredOn)
	policytest.SetVM(s, "big2", func(vm *cluster.VM) { vm.Unmovable = "PCI passthrough" })
	policytest.SetHost(s, "h03", func(h *cluster.Host) { h.Maintenance = cluster.MaintenanceOn; h.Operation = "op-1" })
	p := Rollout(s, RolloutRequest{Hosts: []string{"h01", "h02", "h03"}, Parallel: 1, Order: OrderListed}, placement.Options{})
	if p.OK() {
		t.Fatal("plan with blockers is OK")
	}
	want := map[string]string{"h01": "not enough capacity", "h02": "cannot migrate: PCI passthrough", "h03": "already in maintenance"}
	for _, h := range p.Hosts {
		if len(h.Blockers) == 0 || !strings.Contains(strings.Join(h.Blockers, ";"), want[h.Host]) {
			t.Fatalf("%s blockers %q, want %q", h.Host, h.Blockers, want[h.Host])
		}
	}
	if p.FromHistory || p.MigrationSeconds != DefaultMigrationSeconds {
		t.Fatal("no history: the default estimate is used")
	}
}

// TestPlanRolloutParallelCappedByFailover: five equal hosts, half full,
// absorb two failures; with min_host_failures 1, at most one host may be
// out at a time even if 3 are asked.
func TestPlanRolloutParallelCappedByFailover(t *testing.T) {
	s := policytest.NewCluster(5, 64)
	for i, h := range s.HostNames() {
		policytest.AddVM(s, "v"+h, h, 24, cluster.PoweredOn)
		_ = i
	}
	p := Rollout(s, RolloutRequest{Hosts: s.HostNames(), Parallel: 3, MinHostFailures: 1}, placement.Options{})
	if p.FailoverCapacity < 2 {
		t.Fatalf("failover capacity %d", p.FailoverCapacity)
	}
	if p.Parallel != p.FailoverCapacity-1 || p.ParallelNote == "" {
		t.Fatalf("parallel %d (%q) with capacity %d", p.Parallel, p.ParallelNote, p.FailoverCapacity)
	}
	for _, w := range p.Waves {
		if len(w.Hosts) > p.Parallel {
			t.Fatalf("wave %d has %d hosts", w.Number, len(w.Hosts))
		}
	}
	p = Rollout(s, RolloutRequest{Hosts: s.HostNames(), Parallel: 1, MinHostFailures: p.FailoverCapacity}, placement.Options{})
	if p.OK() || len(p.Blockers) != 1 {
		t.Fatalf("min = capacity: blockers %v", p.Blockers)
	}
}

// TestPlanRolloutBudgetsLengthenWaves: a disruption budget of one VM at a
// time for the db group makes a wave that moves three db VMs take three
// migrations' time, where per_source alone would allow two at once.
func TestPlanRolloutBudgetsLengthenWaves(t *testing.T) {
	s := policytest.NewCluster(3, 64)
	for _, id := range []string{"db-1", "db-2", "db-3"} {
		policytest.AddVM(s, id, "h01", 4, cluster.PoweredOn)
	}
	req := RolloutRequest{Hosts: []string{"h01"}, Parallel: 1, History: MigrationHistory{Count: 1, Seconds: 10}}
	if p := Rollout(s, req, placement.Options{}); p.EstimatedSeconds != 20 {
		t.Fatalf("without a budget: %v s, want 20 (two at a time)", p.EstimatedSeconds)
	}
	c := mustCompile(t, s, "vm_groups:\n  - {name: db, pattern: \"db-*\"}\ndisruption_budgets:\n  - {vm_group: db, max_migrating: 1}\n")
	p := Rollout(s, req, placement.Options{Policy: c})
	if !p.OK() || p.EstimatedSeconds != 30 {
		t.Fatalf("with max_migrating 1: %v s, want 30; blockers %v", p.EstimatedSeconds, p.Hosts[0].Blockers)
	}
}

func TestPlanRolloutOrders(t *testing.T) {
	s := policytest.NewCluster(4, 64)
	policytest.AddVM(s, "x1", "h01", 1, cluster.PoweredOn)
	policytest.AddVM(s, "x2", "h01", 1, cluster.PoweredOn)
	policytest.AddVM(s, "y1", "h02", 1, cluster.PoweredOn)
	for _, h := range []string{"h01", "h03"} {
		policytest.SetHost(s, h, func(h *cluster.Host) { h.Labels = map[string]string{"rack": "b"} })
	}
	for _, h := range []string{"h02", "h04"} {
		policytest.SetHost(s, h, func(h *cluster.Host) { h.Labels = map[string]string{"rack": "a"} })
	}
	listed := []string{"h01", "h02", "h03", "h04"}
	for _, tc := range []struct {
		order string
		waves string
	}{
		{OrderFewestVMs, "h03,h04|h02,h01"},
		{OrderListed, "h01,h02|h03,h04"},
		{OrderRack, "h04,h02|h03,h01"},
	} {
		p := Rollout(s, RolloutRequest{Hosts: listed, Parallel: 2, Order: tc.order}, placement.Options{})
		var ws []string
		for _, w := range p.Waves {
			ws = append(ws, strings.Join(w.Hosts, ","))
		}
		if got := strings.Join(ws, "|"); got != tc.waves {
			t.Errorf("order %s: waves %s, want %s", tc.order, got, tc.waves)
		}
	}
}

// BenchmarkPlanRollout plans a rollout of 2,000 hosts and 40,000 VMs in
// waves of 4. Target: under 2 s/op.
func BenchmarkPlanRollout(b *testing.B) {
	s := policytest.Inventory(2000, 20, 20, 1024, 3)
	if len(s.VMs) < 40000 {
		b.Fatalf("inventory has %d VMs", len(s.VMs))
	}
	req := RolloutRequest{Hosts: s.HostNames(), Parallel: 4, Order: OrderFewestVMs}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		p := Rollout(s, req, placement.Options{MemoryReserve: 0.1})
		if !p.OK() || len(p.Waves) != 500 {
			b.Fatalf("plan: %d waves, blockers %v", len(p.Waves), p.Blockers)
		}
	}
	// CPU time per plan (the process's, garbage collection included): what
	// a plan costs whatever else the machine runs.
	b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
}

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
