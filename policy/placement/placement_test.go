package placement

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/policytest"
)

// TestPlaceFilters puts one 8 GiB VM from h01 into a two-host cluster whose
// other host, h02, is changed to fail one filter at a time.
func TestPlaceFilters(t *testing.T) {
	for _, tc := range []struct {
		name   string
		host   func(h *cluster.Host)
		setup  func(s *cluster.State, l *Ledger, o *Options)
		power  cluster.PowerState
		reason string // "" when h02 must be chosen
	}{
		{name: "fits"},
		{name: "excluded", setup: func(_ *cluster.State, _ *Ledger, o *Options) { o.Exclude = map[string]bool{"h02": true} }, reason: ReasonExcluded},
		{name: "other driver", host: func(h *cluster.Host) { h.Driver = "kvm" }, reason: ReasonOtherGroup},
		{name: "other group", host: func(h *cluster.Host) { h.Group = "g2" }, reason: ReasonOtherGroup},
		{name: "not accepting", host: func(h *cluster.Host) { h.Admin = cluster.NotAccepting }, reason: ReasonAdminStatus},
		{name: "not accepting allowed", host: func(h *cluster.Host) { h.Admin = cluster.NotAccepting },
			setup: func(_ *cluster.State, _ *Ledger, o *Options) { o.AllowNotAccepting = true }},
		{name: "admin maintenance", host: func(h *cluster.Host) { h.Admin = cluster.InMaintenance }, reason: ReasonAdminStatus},
		{name: "admin offline even when allowed", host: func(h *cluster.Host) { h.Admin = cluster.Offline },
			setup: func(_ *cluster.State, _ *Ledger, o *Options) { o.AllowNotAccepting = true }, reason: ReasonAdminStatus},
		{name: "maintenance entering", host: func(h *cluster.Host) { h.Maintenance = cluster.MaintenanceEntering }, reason: ReasonMaintenance},
		{name: "maintenance error", host: func(h *cluster.Host) { h.Maintenance = cluster.MaintenanceError }, reason: ReasonMaintenance},
		{name: "health unknown", host: func(h *cluster.Host) { h.Health = cluster.HealthUnknown }},
		{name: "health suspect", host: func(h *cluster.Host) { h.Health = cluster.HealthSuspect }, reason: ReasonHealth},
		{name: "health dead", host: func(h *cluster.Host) { h.Health = cluster.HealthDead }, reason: ReasonHealth},
		{name: "health fenced", host: func(h *cluster.Host) { h.Health = cluster.HealthFenced }, reason: ReasonHealth},
		{name: "disconnected", host: func(h *cluster.Host) { h.Connection = cluster.Disconnected }, reason: ReasonDisconnected},
		{name: "not responding", host: func(h *cluster.Host) { h.Connection = cluster.NotResponding }, reason: ReasonDisconnected},
		{name: "full of running VMs", setup: func(s *cluster.State, _ *Ledger, _ *Options) {
			policytest.AddVM(s, "big", "h02", 60, cluster.PoweredOn)
		}, reason: ReasonInsufficientMemory},
		{name: "exact fit", setup: func(s *cluster.State, _ *Ledger, _ *Options) {
			policytest.AddVM(s, "big", "h02", 56, cluster.PoweredOn)
		}},
		{name: "stopped VMs take no memory", setup: func(s *cluster.State, _ *Ledger, _ *Options) {
			policytest.AddVM(s, "big", "h02", 60, cluster.PoweredOff)
		}},
		{name: "reserved by moves in flight", setup: func(_ *cluster.State, l *Ledger, _ *Options) {
			l.Reserve("other", "h03", "h02", 57*policytest.GiB)
		}, reason: ReasonInsufficientMemory},
		{name: "memory reserve", setup: func(s *cluster.State, _ *Ledger, o *Options) {
			policytest.AddVM(s, "mid", "h02", 41, cluster.PoweredOn)
			o.MemoryReserve = 0.25 // 48 usable, 41 used
		}, reason: ReasonInsufficientMemory},
		{name: "stopped VM needs no free memory", power: cluster.PoweredOff, setup: func(s *cluster.State, _ *Ledger, _ *Options) {
			policytest.AddVM(s, "big", "h02", 64, cluster.PoweredOn)
		}},
		{name: "stopped VM still needs a feasible host", power: cluster.PoweredOff,
			host: func(h *cluster.Host) { h.Maintenance = cluster.MaintenanceOn }, reason: ReasonMaintenance},
		{name: "target busy", setup: func(_ *cluster.State, l *Ledger, o *Options) {
			l.Reserve("other", "h03", "h02", policytest.GiB)
			o.MaxInFlightTo = 1
		}, reason: ReasonTargetBusy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := policytest.NewCluster(2, 64)
			l := NewLedger()
			var o Options
			if tc.host != nil {
				policytest.SetHost(s, "h02", tc.host)
			}
			if tc.setup != nil {
				tc.setup(s, l, &o)
			}
			power := tc.power
			if power == "" {
				power = cluster.PoweredOn
			}
			vm := policytest.AddVM(s, "vm", "h01", 8, power)
			p := Place(s, s.Usage(), l, vm, o)
			if p.Rejections[ReasonSameHost] != 1 {
				t.Errorf("source not rejected as same-host: %v", p.Rejections)
			}
			on := PlaceOn(s, s.Usage(), l, vm, "h02", o)
			if tc.reason == "" {
				if p.Host != "h02" || on.Host != "h02" {
					t.Fatalf("Place = %q, PlaceOn = %q (%s), want h02", p.Host, on.Host, p.Explain())
				}
				return
			}
			if p.Host != "" || p.Rejections[tc.reason] != 1 {
				t.Fatalf("Place = %q %v, want h02 rejected for %s", p.Host, p.Rejections, tc.reason)
			}
			if want := "1 host " + tc.reason; !strings.Contains(p.Explain(), want) {
				t.Errorf("Explain() = %q, want it to name %q", p.Explain(), want)
			}
			if on.Host != "" || on.Rejections[tc.reason] != 1 {
				t.Errorf("PlaceOn = %q %v, want rejected for %s", on.Host, on.Rejections, tc.reason)
			}
			if tc.reason == ReasonTargetBusy && !p.Transient() {
				t.Error("target-busy placement is not transient")
			}
		})
	}
}

func TestPlaceUnknownHosts(t *testing.T) {
	s := policytest.NewCluster(2, 64)
	vm := &cluster.VM{ID: "x", Name: "x", Host: "gone", Power: cluster.PoweredOn, MemoryBytes: policytest.GiB}
	if p := Place(s, s.Usage(), nil, vm, Options{}); p.Host != "" || p.Rejections[ReasonUnknownHost] != 1 {
		t.Errorf("Place from unknown host = %+v", p)
	}
	vm.Host = "h01"
	if p := PlaceOn(s, s.Usage(), nil, vm, "h99", Options{}); p.Host != "" || p.Rejections[ReasonUnknownHost] != 1 {
		t.Errorf("PlaceOn unknown host = %+v", p)
	}
}

// TestPlaceScore checks the spread scorer and its tie-breaks.
func TestPlaceScore(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(s *cluster.State, l *Ledger, o *Options)
		want  string
	}{
		{name: "ties go to the first name", want: "h02"},
		{name: "most free share wins", setup: func(s *cluster.State, _ *Ledger, _ *Options) {
			policytest.AddVM(s, "a", "h02", 16, cluster.PoweredOn)
			policytest.AddVM(s, "b", "h03", 8, cluster.PoweredOn)
			policytest.AddVM(s, "c", "h04", 16, cluster.PoweredOn)
		}, want: "h03"},
		{name: "share, not bytes", setup: func(s *cluster.State, _ *Ledger, _ *Options) {
			policytest.SetHost(s, "h02", func(h *cluster.Host) { h.MemoryBytes = 256 * policytest.GiB }) // 96 free of 256
			policytest.AddVM(s, "a", "h02", 160, cluster.PoweredOn)
			policytest.AddVM(s, "b", "h03", 16, cluster.PoweredOn) // 48 of 64
			policytest.AddVM(s, "c", "h04", 16, cluster.PoweredOn)
		}, want: "h03"},
		{name: "reservations count", setup: func(_ *cluster.State, l *Ledger, _ *Options) {
			l.Reserve("m1", "h09", "h02", 8*policytest.GiB)
			l.Reserve("m2", "h09", "h03", 8*policytest.GiB)
		}, want: "h04"},
		{name: "equal share: fewer moves in", setup: func(s *cluster.State, l *Ledger, _ *Options) {
			l.Reserve("m1", "h09", "h02", 0)
			l.Reserve("m2", "h09", "h03", 0)
		}, want: "h04"},
		{name: "preferred wins", setup: func(s *cluster.State, _ *Ledger, o *Options) {
			policytest.AddVM(s, "a", "h03", 40, cluster.PoweredOn)
			o.Prefer = map[string]bool{"h03": true}
		}, want: "h03"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := policytest.NewCluster(4, 64)
			l := NewLedger()
			var o Options
			if tc.setup != nil {
				tc.setup(s, l, &o)
			}
			vm := policytest.AddVM(s, "vm", "h01", 4, cluster.PoweredOn)
			for i := 0; i < 20; i++ { // map order must not matter
				if p := Place(s, s.Usage(), l, vm, o); p.Host != tc.want {
					t.Fatalf("Place = %q, want %q", p.Host, tc.want)
				}
			}
		})
	}
}

// TestPlaceSpread places 10 equal VMs on 5 equal hosts, reserving each move.
func TestPlaceSpread(t *testing.T) {
	s := policytest.NewCluster(6, 64)
	for i := 0; i < 10; i++ {
		policytest.AddVM(s, "vm"+string(rune('a'+i)), "h01", 4, cluster.PoweredOn)
	}
	usage, l := s.Usage(), NewLedger()
	got := map[string]int{}
	vms := s.VMsOn("h01")
	Order(vms)
	for _, vm := range vms {
		p := Place(s, usage, l, vm, Options{})
		if p.Host == "" {
			t.Fatalf("%s: %s", vm.ID, p.Explain())
		}
		l.Reserve(vm.ID, vm.Host, p.Host, vm.MemoryBytes)
		got[p.Host]++
	}
	pre := PrecheckEvacuation(s, nil, EvacuationRequest{Host: "h01", Migrate: MigrateActiveOnly}, Options{})
	for _, h := range []string{"h02", "h03", "h04", "h05", "h06"} {
		if got[h] != 2 {
			t.Errorf("Place: placements per host = %v, want 2 each", got)
		}
		if n := targets(pre.LiveMigrate)[h]; n != 2 {
			t.Errorf("precheck: %s gets %d, want 2 (%v)", h, n, targets(pre.LiveMigrate))
		}
	}
}

func TestExplain(t *testing.T) {
	for _, tc := range []struct {
		p    Placement
		want string
	}{
		{Placement{Host: "h1"}, "target h1"},
		{Placement{}, "no target: no hosts"},
		{Placement{Rejections: map[string]int{ReasonMaintenance: 1, ReasonInsufficientMemory: 3}},
			"no target: 3 hosts insufficient-memory, 1 host maintenance"},
		{Placement{Rejections: map[string]int{ReasonSameHost: 1, ReasonHealth: 1}},
			"no target: 1 host health, 1 host same-host"},
	} {
		if got := tc.p.Explain(); got != tc.want {
			t.Errorf("Explain(%v) = %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		o     Options
		field string
	}{
		{Options{}, ""},
		{Options{MemoryReserve: 0.2, MaxInFlightTo: 2}, ""},
		{Options{MemoryReserve: -0.1}, "memory_reserve"},
		{Options{MemoryReserve: 1}, "memory_reserve"},
		{Options{MaxInFlightTo: -1}, "max_in_flight_to"},
	} {
		err := tc.o.Validate()
		var fe *policy.FieldError
		if tc.field == "" && err != nil || tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field) {
			t.Errorf("Validate(%+v) = %v, want field %q", tc.o, err, tc.field)
		}
	}
}

func TestFreeMemory(t *testing.T) {
	s := policytest.NewCluster(2, 64)
	policytest.AddVM(s, "a", "h02", 16, cluster.PoweredOn)
	policytest.AddVM(s, "b", "h02", 16, cluster.PoweredOff)
	l := NewLedger()
	l.Reserve("c", "h01", "h02", 8*policytest.GiB)
	if got := FreeMemory(s.Hosts["h02"], s.Usage(), l, Options{MemoryReserve: 0.25}); got != 24*policytest.GiB {
		t.Errorf("FreeMemory = %s, want 24 GiB", formatBytes(got))
	}
}

// TestPlaceMatchesFullScan checks Place, which consults the ledger only for
// hosts that could win, against a plain scan of every host (the fleet the
// precheck uses) on random clusters with moves in flight.
func TestPlaceMatchesFullScan(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for round := 0; round < 300; round++ {
		s := policytest.Inventory(30, 1+r.IntN(4), 3, 64, uint64(round))
		names := s.HostNames()
		for _, n := range names[1:] {
			policytest.SetHost(s, n, func(h *cluster.Host) {
				h.MemoryBytes = (32 + r.Int64N(4)*32) * policytest.GiB
				switch r.IntN(12) {
				case 0:
					h.Admin = cluster.NotAccepting
				case 1:
					h.Health = cluster.HealthSuspect
				case 2:
					h.Group = "g2"
				}
			})
		}
		l := NewLedger()
		for i := 0; i < r.IntN(40); i++ {
			l.Reserve(fmt.Sprint("m", i), names[r.IntN(len(names))], names[r.IntN(len(names))], r.Int64N(24)*policytest.GiB)
		}
		o := Options{MaxInFlightTo: r.IntN(3), AllowNotAccepting: r.IntN(2) == 0,
			Exclude: map[string]bool{names[r.IntN(len(names))]: true}}
		usage := s.Usage()
		for _, vm := range s.VMsOn(names[0]) {
			got := Place(s, usage, l, vm, o)
			f := newFleet(s, usage, l, s.Hosts[vm.Host], "", o)
			_, want := f.pick(vm)
			if want.Host != "" { // pick counts rejections only when nothing fits
				counts := f.static
				for i := range f.cands {
					counts[f.cands[i].check(MemoryNeed(vm), CPUNeed(vm), &o)]++
				}
				want.Rejections = rejectionMap(&counts)
			}
			if got.Host != want.Host || !maps.Equal(got.Rejections, want.Rejections) {
				t.Fatalf("round %d, %s: Place = %+v, full scan = %+v", round, vm.ID, got, want)
			}
		}
	}
}

// TestPlaceWithBudgetAndNoLedger: Place without a ledger (nothing in flight)
// under a policy with a disruption budget places the VM; it used to
// dereference the nil ledger.
func TestPlaceWithBudgetAndNoLedger(t *testing.T) {
	s := groupsState()
	c := mustCompile(t, s, groupsPolicy)
	vm := s.VMs["web-1"]
	p := Place(s, s.Usage(), nil, vm, Options{Policy: c})
	if p.Host == "" || p.Host == vm.Host {
		t.Errorf("Place(web-1) with a budget and no ledger = %+v, want another host", p)
	}
}
