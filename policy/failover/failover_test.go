package failover

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/placement"
	"github.com/herd-project/herd/policy/policytest"
)

// each returns n hosts that each hold the VMs given, in GiB.
func each(n int, vms ...int64) [][]int64 {
	out := make([][]int64, n)
	for i := range out {
		out[i] = vms
	}
	return out
}

func TestFailoverCapacity(t *testing.T) {
	for _, c := range []struct {
		name    string
		hosts   [][]int64
		reserve float64
		change  func(s *cluster.State)
		want    int
	}{
		{"four half full, small VMs", each(4, 10, 10, 10, 10, 10), 0, nil, 2},
		{"four half full, 30+20", each(4, 30, 20), 0, nil, 2},
		{"four 60% full", each(4, 15, 15, 15, 15), 0, nil, 1},
		{"two 60% full", each(2, 60), 0, nil, 0},
		// 60 GiB fits nowhere though 80 GiB are free in all.
		{"fragmented", each(3, 60), 0, nil, 0},
		{"reserve", each(4, 10, 10, 10, 10, 10), 0.2, nil, 1},
		{"empty cluster", each(3), 0, nil, 3},
		{"stopped VMs need nothing", each(2, 60), 0, func(s *cluster.State) {
			policytest.SetVM(s, "vm001", func(vm *cluster.VM) { vm.Power = cluster.PoweredOff })
		}, 1},
		// h01 (200 GiB) goes first: its 100 GiB into 3 × 80; then h01 and
		// h02: 120 into 160; three: 140 into 80.
		{"largest first", [][]int64{{10, 10, 10, 10, 10, 10, 10, 10, 10, 10}, {10, 10}, {10, 10}, {10, 10}}, 0,
			func(s *cluster.State) {
				policytest.SetHost(s, "h01", func(h *cluster.Host) { h.MemoryBytes = 200 * policytest.GiB })
			}, 2},
		// Equal hosts: the most used fails first. Losing h01 or h02 could
		// be absorbed; losing h03 cannot.
		{"most used first", [][]int64{{50}, {50}, {60}}, 0, nil, 0},
		// A NOT_ACCEPTING host can fail but takes nothing.
		{"not accepting", each(4, 10, 10, 10, 10, 10), 0,
			func(s *cluster.State) {
				policytest.SetHost(s, "h04", func(h *cluster.Host) { h.Admin = cluster.NotAccepting })
			}, 1},
		// Closed, unhealthy and disconnected hosts neither fail nor absorb.
		{"closed hosts", each(5, 10, 10, 10, 10, 10), 0, func(s *cluster.State) {
			policytest.SetHost(s, "h02", func(h *cluster.Host) { h.Admin, h.Maintenance = cluster.InMaintenance, cluster.MaintenanceOn })
			policytest.SetHost(s, "h03", func(h *cluster.Host) { h.Health = cluster.HealthDead })
			policytest.SetHost(s, "h04", func(h *cluster.Host) { h.Connection = cluster.NotResponding })
		}, 1},
		// VMs stay in their group: g2's free room does not help g1.
		{"groups", [][]int64{{60}, {60}, {}, {}}, 0, func(s *cluster.State) {
			policytest.SetHost(s, "h03", func(h *cluster.Host) { h.Group = "g2" })
			policytest.SetHost(s, "h04", func(h *cluster.Host) { h.Group = "g2" })
		}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := policytest.Build(100, c.hosts...)
			if c.change != nil {
				c.change(s)
			}
			if got := Capacity(s, placement.Options{MemoryReserve: c.reserve}); got != c.want {
				t.Fatalf("capacity %d, want %d", got, c.want)
			}
		})
	}
}

func TestFailoverCapacityPolicyReserve(t *testing.T) {
	s := policytest.Build(100, each(4, 10, 10, 10, 10, 10)...)
	d := policy.Default()
	d.Placement.MemoryReserve = 0.2
	if got := Capacity(s, placement.Options{Policy: placement.Compile(d, s)}); got != 1 {
		t.Fatalf("capacity %d with the policy's 20%% reserve, want 1", got)
	}
}

func TestFailoverAfterMaintenance(t *testing.T) {
	s := policytest.Build(100, each(4, 10, 10, 10, 10, 10)...)
	before := Capacity(s, placement.Options{})
	// h01's 50 GiB spread over three hosts (70, 70, 60): losing the most
	// used puts 70 into 30 + 40 free; losing two cannot be absorbed.
	after := AfterMaintenance(s, "h01", placement.Options{})
	if before != 2 || after != 1 {
		t.Fatalf("capacity %d, after maintenance of h01 %d; want 2 and 1", before, after)
	}
	if got := AfterMaintenance(s, "nope", placement.Options{}); got != before {
		t.Fatalf("unknown host: %d, want %d", got, before)
	}
	policytest.SetHost(s, "h02", func(h *cluster.Host) { h.Admin, h.Maintenance = cluster.InMaintenance, cluster.MaintenanceOn })
	if got, want := AfterMaintenance(s, "h02", placement.Options{}), Capacity(s, placement.Options{}); got != want {
		t.Fatalf("host already in maintenance: %d, want the current %d", got, want)
	}
	// The host's VMs do not fit on the others: nothing is left to fail over.
	s = policytest.Build(100, []int64{60}, []int64{50}, []int64{50})
	if got := AfterMaintenance(s, "h01", placement.Options{}); got != 0 {
		t.Fatalf("evacuation does not fit: %d, want 0", got)
	}
}

// TestFailoverCapacityMatchesLinearScan checks the binary search and the
// memory bound against trying every k in turn, on random clusters with
// groups, sizes and statuses mixed.
func TestFailoverCapacityMatchesLinearScan(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	statuses := []cluster.AdminStatus{cluster.Available, cluster.Available, cluster.Available, cluster.NotAccepting, cluster.InMaintenance}
	for i := 0; i < 300; i++ {
		s := cluster.NewState()
		n := 2 + r.IntN(30)
		for h := 0; h < n; h++ {
			name := fmt.Sprintf("h%02d", h)
			s.Hosts[name] = &cluster.Host{
				Name: name, Driver: "vc", Group: fmt.Sprintf("g%d", r.IntN(3)), Admin: statuses[r.IntN(len(statuses))],
				Maintenance: cluster.MaintenanceOff, Health: cluster.HealthAlive, Connection: cluster.Connected,
				MemoryBytes: (64 + 64*r.Int64N(4)) * policytest.GiB,
			}
			for v := r.IntN(12); v > 0; v-- {
				policytest.AddVM(s, fmt.Sprintf("vm%02d-%02d", h, v), name, 1+r.Int64N(24), cluster.PoweredOn)
			}
		}
		o := placement.Options{MemoryReserve: 0.1 * float64(r.IntN(3))}
		m := NewModel(s, o)
		order := m.order()
		m.byFree = m.absorbersByFree()
		want := 0
		for want < len(order) && m.fits(order[:want+1]) {
			want++
		}
		if got := Capacity(s, o); got != want {
			t.Fatalf("case %d: capacity %d, linear scan %d", i, got, want)
		}
		// Stopped VMs take nothing; from the usage, the same answer.
		policytest.AddVM(s, fmt.Sprintf("off-%d", i), "h00", 64, cluster.PoweredOff)
		if got := CapacityOfUsage(s, s.CountUsage(), o); got != want {
			t.Fatalf("case %d: capacity from the usage %d, linear scan %d", i, got, want)
		}
	}
}
