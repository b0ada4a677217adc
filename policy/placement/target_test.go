package placement

import (
	"slices"
	"strings"
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy/policytest"
)

func TestPrecheckTargetHost(t *testing.T) {
	for _, tc := range []struct {
		name    string
		target  string
		sizes   []int64 // GiB of running VMs on h01
		stopped int64   // GiB of one stopped VM on h01, if above 0
		change  func(h *cluster.Host)
		live    int
		block   []string // blocker reasons, in order
	}{
		{name: "all fit", target: "h03", sizes: []int64{8, 8, 8}, live: 3},
		{name: "not accepting is fine", target: "h03", sizes: []int64{8}, live: 1,
			change: func(h *cluster.Host) { h.Admin = cluster.NotAccepting }},
		{name: "health unknown is fine", target: "h03", sizes: []int64{8}, live: 1,
			change: func(h *cluster.Host) { h.Health = cluster.HealthUnknown }},
		{name: "does not fit", target: "h03", sizes: []int64{30, 30, 30}, live: 2,
			block: []string{"does not fit on target host h03: needs 30.0 GiB, 4.0 GiB free (short by 26.0 GiB)"}},
		{name: "stopped VM needs no room", target: "h03", sizes: []int64{32, 32}, stopped: 40, live: 2},
		{name: "maintenance", target: "h03", sizes: []int64{8},
			change: func(h *cluster.Host) { h.Admin = cluster.InMaintenance },
			block:  []string{`target_host "h03" cannot take VMs: admin status MAINTENANCE`, `target_host "h03" cannot take VMs`}},
		{name: "offline", target: "h03", sizes: []int64{8},
			change: func(h *cluster.Host) { h.Admin = cluster.Offline },
			block:  []string{`target_host "h03" cannot take VMs: admin status OFFLINE`, `target_host "h03" cannot take VMs`}},
		{name: "other group", target: "h03", sizes: []int64{8},
			change: func(h *cluster.Host) { h.Group = "g2" },
			block:  []string{`target_host "h03" cannot take VMs: driver/group vc/g2, not vc/g1`, `target_host "h03" cannot take VMs`}},
		{name: "suspect", target: "h03", sizes: []int64{8},
			change: func(h *cluster.Host) { h.Health = cluster.HealthSuspect },
			block:  []string{`target_host "h03" cannot take VMs: health suspect`, `target_host "h03" cannot take VMs`}},
		{name: "disconnected", target: "h03", sizes: []int64{8},
			change: func(h *cluster.Host) { h.Connection = cluster.Disconnected },
			block:  []string{`target_host "h03" cannot take VMs: connection disconnected`, `target_host "h03" cannot take VMs`}},
		{name: "unknown", target: "h99", sizes: []int64{8},
			block: []string{`target_host "h99": unknown host`, `target_host "h99" cannot take VMs`}},
		{name: "itself", target: "h01", sizes: []int64{8},
			block: []string{`target_host "h01" cannot take VMs: it is the host being evacuated`, `target_host "h01" cannot take VMs`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := policytest.NewCluster(3, 64)
			for i, g := range tc.sizes {
				policytest.AddVM(s, string(rune('a'+i)), "h01", g, cluster.PoweredOn)
			}
			if tc.stopped > 0 {
				policytest.AddVM(s, "stopped", "h01", tc.stopped, cluster.PoweredOff)
			}
			if tc.change != nil {
				policytest.SetHost(s, tc.target, tc.change)
			}
			p := PrecheckEvacuation(s, nil, EvacuationRequest{Host: "h01", Migrate: MigrateAll, TargetHost: tc.target}, Options{})
			if len(p.LiveMigrate) != tc.live {
				t.Errorf("live = %s, want %d VMs", ids(p.LiveMigrate), tc.live)
			}
			for _, it := range slices.Concat(p.LiveMigrate, p.OfflineMigrate) {
				if it.Target != tc.target {
					t.Errorf("%s planned to %s", it.VM, it.Target)
				}
			}
			var got []string
			for _, b := range p.Blockers {
				got = append(got, b.Reason)
			}
			if !slices.Equal(got, tc.block) {
				t.Errorf("blockers = %q\nwant       %q", got, tc.block)
			}
		})
	}
}

func TestPrecheckSourceNotOperating(t *testing.T) {
	for _, tc := range []struct {
		conn    cluster.Connection
		health  cluster.Health
		blocked bool
	}{
		{cluster.Connected, cluster.HealthAlive, false},
		{cluster.Connected, cluster.HealthSuspect, false},
		{cluster.Connected, cluster.HealthUnknown, false},
		{cluster.Connected, cluster.HealthDead, true},
		{cluster.Connected, cluster.HealthFenced, true},
		{cluster.Disconnected, cluster.HealthAlive, true},
		{cluster.NotResponding, cluster.HealthSuspect, true},
	} {
		s := modeCluster()
		policytest.SetHost(s, "h01", func(h *cluster.Host) { h.Connection, h.Health = tc.conn, tc.health })
		p := PrecheckEvacuation(s, nil, EvacuationRequest{Host: "h01", Migrate: MigrateActiveOnly}, Options{})
		blocked := len(p.Blockers) == 1 && p.Blockers[0].VM == "" &&
			strings.HasPrefix(p.Blockers[0].Reason, "host hypervisor not operating: connection "+string(tc.conn)) &&
			strings.Contains(p.Blockers[0].Reason, "needs recovery, not maintenance")
		if blocked != tc.blocked || !tc.blocked && len(p.Blockers) > 0 {
			t.Errorf("%s/%s: blockers %+v, want blocked %v", tc.conn, tc.health, p.Blockers, tc.blocked)
		}
	}
	s := modeCluster()
	for _, req := range []EvacuationRequest{{Host: "h99"}, {Host: "h01", Migrate: "most"}} {
		if p := PrecheckEvacuation(s, nil, req, Options{}); len(p.Blockers) != 1 || p.Blockers[0].VM != "" {
			t.Errorf("%+v: blockers %+v, want one host-level blocker", req, p.Blockers)
		}
	}
}

// TestPrecheckListsEveryVMOnce checks on a random inventory that each VM of
// the host is in exactly one list or blocker, every list in Order, and no
// target gets more than it has free.
func TestPrecheckListsEveryVMOnce(t *testing.T) {
	for _, mode := range []MigrateMode{MigrateNone, MigrateActiveOnly, MigrateAll} {
		s := policytest.Inventory(12, 10, 120, 512, 7)
		policytest.SetVM(s, "vm000003", func(vm *cluster.VM) { vm.Unmovable = "local disk" })
		p := PrecheckEvacuation(s, nil, EvacuationRequest{Host: "h01", Migrate: mode, ShutdownVMs: []string{"vm000010"}}, Options{MemoryReserve: 0.1})
		seen := map[string]int{}
		for _, list := range [][]Item{p.LiveMigrate, p.OfflineMigrate, p.Shutdown, p.Stay} {
			if !slices.IsSortedFunc(list, func(a, b Item) int { return CompareOrder(s.VMs[a.VM], s.VMs[b.VM]) }) {
				t.Errorf("%s: list not in order: %s", mode, ids(list))
			}
			for _, it := range list {
				seen[it.VM]++
			}
		}
		for _, b := range p.Blockers {
			seen[b.VM]++
		}
		for _, vm := range s.VMsOn("h01") {
			if seen[vm.ID] != 1 {
				t.Errorf("%s: %s listed %d times", mode, vm.ID, seen[vm.ID])
			}
		}
		usage, planned := s.Usage(), map[string]int64{}
		for _, it := range p.LiveMigrate {
			planned[it.Target] += it.MemoryBytes
		}
		for h, b := range planned {
			if free := FreeMemory(s.Hosts[h], usage, nil, Options{MemoryReserve: 0.1}); b > free {
				t.Errorf("%s: %s planned %s with %s free", mode, h, formatBytes(b), formatBytes(free))
			}
		}
	}
}

func TestNextTarget(t *testing.T) {
	s := policytest.NewCluster(4, 64)
	policytest.AddVM(s, "load3", "h03", 8, cluster.PoweredOn)
	policytest.AddVM(s, "load4", "h04", 16, cluster.PoweredOn)
	vm := policytest.AddVM(s, "vm", "h01", 8, cluster.PoweredOn)
	req := EvacuationRequest{Host: "h01", Migrate: MigrateActiveOnly}
	for _, tc := range []struct {
		name  string
		req   func(r *EvacuationRequest)
		ledg  func(l *Ledger)
		o     Options
		tried []string
		want  string
		trans bool
	}{
		{name: "best", want: "h02"},
		{name: "avoid tried", tried: []string{"h02"}, want: "h03"},
		{name: "avoid all tried", tried: []string{"h02", "h03"}, want: "h04"},
		{name: "fall back to tried", tried: []string{"h02", "h03", "h04"}, want: "h02"},
		{name: "fall back past excluded", tried: []string{"h02", "h03"}, o: Options{Exclude: map[string]bool{"h04": true}}, want: "h02"},
		{name: "target host even if tried", req: func(r *EvacuationRequest) { r.TargetHost = "h04" }, tried: []string{"h04"}, want: "h04"},
		{name: "target host without room", req: func(r *EvacuationRequest) { r.TargetHost = "h04" },
			ledg: func(l *Ledger) { l.Reserve("x", "h02", "h04", 41*policytest.GiB) }},
		{name: "others busy: fall back to a tried host", tried: []string{"h02"}, o: Options{MaxInFlightTo: 1},
			ledg: func(l *Ledger) { l.Reserve("x", "h09", "h03", 0); l.Reserve("y", "h09", "h04", 0) }, want: "h02"},
		{name: "all busy: wait", tried: []string{"h02"}, o: Options{MaxInFlightTo: 1},
			ledg: func(l *Ledger) {
				l.Reserve("x", "h09", "h03", 0)
				l.Reserve("y", "h09", "h04", 0)
				l.Reserve("z", "h09", "h02", 0)
			}, trans: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, l := req, NewLedger()
			if tc.req != nil {
				tc.req(&r)
			}
			if tc.ledg != nil {
				tc.ledg(l)
			}
			p := NextTarget(s, s.Usage(), l, vm, r, tc.tried, tc.o)
			if p.Host != tc.want || p.Transient() != tc.trans {
				t.Errorf("NextTarget = %q (%s), transient %v; want %q, transient %v", p.Host, p.Explain(), p.Transient(), tc.want, tc.trans)
			}
		})
	}
}
