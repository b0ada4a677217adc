package placement

import (
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy/policytest"
)

// perGiB is a migration time proportional to memory, plus a fixed overhead.
func perGiB(per, overhead time.Duration) func(vm *cluster.VM) time.Duration {
	return func(vm *cluster.VM) time.Duration {
		return overhead + time.Duration(float64(vm.MemoryBytes)/float64(policytest.GiB)*float64(per))
	}
}

func TestSimulateSmall(t *testing.T) {
	s := policytest.NewCluster(3, 64)
	for id, g := range map[string]int64{"a": 4, "b": 3, "c": 3, "d": 2} {
		policytest.AddVM(s, id, "h01", g, cluster.PoweredOn)
	}
	// Two slots, largest first: a(4) and b(3) start; c starts at 3 and d at
	// 4, both ending at 6.
	ms, lb, err := SimulateEvacuation(s, EvacuationRequest{Host: "h01", Migrate: MigrateAll}, DefaultLimits(), Options{}, perGiB(time.Second, 0))
	if err != nil || ms != 6*time.Second || lb != 6*time.Second {
		t.Fatalf("makespan %s, lower bound %s, err %v; want 6s, 6s", ms, lb, err)
	}
	// One host as target with one slot into it: everything in sequence.
	ms, lb, err = SimulateEvacuation(s, EvacuationRequest{Host: "h01", Migrate: MigrateAll, TargetHost: "h03"},
		Limits{PerSource: 4, PerTarget: 1, Cluster: 8}, Options{}, perGiB(time.Second, 0))
	if err != nil || ms != 12*time.Second || lb != 12*time.Second {
		t.Fatalf("target host: makespan %s, lower bound %s, err %v; want 12s, 12s", ms, lb, err)
	}
	// Nothing to move.
	ms, lb, err = SimulateEvacuation(s, EvacuationRequest{Host: "h01"}, DefaultLimits(), Options{}, perGiB(time.Second, 0))
	if err != nil || ms != 0 || lb != 0 {
		t.Fatalf("migrate none: %s, %s, %v", ms, lb, err)
	}
}

func TestSimulateRatio(t *testing.T) {
	for _, tc := range []struct {
		name        string
		hosts, vms  int
		limits      Limits
		target      string
		wantUsable  int
		overheadSec int
	}{
		{name: "defaults", hosts: 24, vms: 120, limits: DefaultLimits(), wantUsable: 2},
		{name: "wide source", hosts: 24, vms: 120, limits: Limits{PerSource: 8, PerTarget: 2, Cluster: 8}, wantUsable: 8, overheadSec: 5},
		{name: "few targets", hosts: 4, vms: 100, limits: Limits{PerSource: 8, PerTarget: 1, Cluster: 8}, wantUsable: 3},
		{name: "one target host", hosts: 21, vms: 100, limits: Limits{PerSource: 4, PerTarget: 3, Cluster: 8}, target: "h07", wantUsable: 3},
		{name: "many VMs, wide", hosts: 40, vms: 300, limits: Limits{PerSource: 16, PerTarget: 2, Cluster: 16}, wantUsable: 16, overheadSec: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hostGiB := int64(4096)
			if tc.target != "" {
				hostGiB = 16384
			}
			s := policytest.Inventory(tc.hosts, 5, tc.vms, hostGiB, 42)
			per, over := time.Second, time.Duration(tc.overheadSec)*time.Second
			req := EvacuationRequest{Host: "h01", Migrate: MigrateAll, TargetHost: tc.target}
			ms, lb, err := SimulateEvacuation(s, req, tc.limits, Options{}, perGiB(per, over))
			if err != nil {
				t.Fatal(err)
			}
			var sum time.Duration
			for _, vm := range s.VMsOn("h01") {
				sum += perGiB(per, over)(vm)
			}
			if want := sum / time.Duration(tc.wantUsable); lb < want {
				t.Errorf("lower bound %s below sum/usable %s", lb, want)
			}
			ratio := float64(ms) / float64(lb)
			t.Logf("makespan %s, lower bound %s, ratio %.4f", ms, lb, ratio)
			if ratio < 1 || ratio > 1.10 {
				t.Errorf("makespan/lowerbound = %.4f, want within [1, 1.10]", ratio)
			}
		})
	}
}

func TestSimulateErrors(t *testing.T) {
	s := policytest.NewCluster(3, 64)
	policytest.AddVM(s, "a", "h01", 8, cluster.PoweredOn)
	policytest.AddVM(s, "pinned", "h01", 8, cluster.PoweredOn).Unmovable = "local disk"
	req := EvacuationRequest{Host: "h01", Migrate: MigrateAll}
	d := perGiB(time.Second, 0)
	for _, tc := range []struct {
		name   string
		req    EvacuationRequest
		limits Limits
		d      func(*cluster.VM) time.Duration
		want   string
	}{
		{"bad limits", req, Limits{PerSource: 2, PerTarget: 0, Cluster: 8}, d, "limits: per_target: must be at least 1, got 0"},
		{"no duration", req, DefaultLimits(), nil, "no duration function"},
		{"blocked", req, DefaultLimits(), d, "1 blockers, first: vm pinned: cannot migrate: local disk"},
		{"negative time", EvacuationRequest{Host: "h01", Migrate: MigrateAll, ShutdownVMs: []string{"pinned"}}, DefaultLimits(),
			func(*cluster.VM) time.Duration { return -time.Second }, "negative migration time"},
	} {
		_, _, err := SimulateEvacuation(s, tc.req, tc.limits, Options{}, tc.d)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "simulate evacuation of h01: ") {
			t.Errorf("%s: err = %v, want it to say %q", tc.name, err, tc.want)
		}
	}
}
