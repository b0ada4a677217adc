package placement

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/policytest"
)

func TestOrder(t *testing.T) {
	vms := []*cluster.VM{
		{ID: "1", Name: "small", MemoryBytes: 2 * policytest.GiB, Priority: 9},
		{ID: "2", Name: "b", MemoryBytes: 8 * policytest.GiB},
		{ID: "3", Name: "a", MemoryBytes: 8 * policytest.GiB},
		{ID: "4", Name: "z", MemoryBytes: 8 * policytest.GiB, Priority: 1},
		{ID: "6", Name: "a", MemoryBytes: 8 * policytest.GiB},
		{ID: "5", Name: "a", MemoryBytes: 8 * policytest.GiB},
		{ID: "7", Name: "big", MemoryBytes: 32 * policytest.GiB},
	}
	Order(vms)
	var got []string
	for _, vm := range vms {
		got = append(got, vm.ID)
	}
	if want := "7,4,3,5,6,2,1"; strings.Join(got, ",") != want {
		t.Errorf("Order = %v, want %s", got, want)
	}
}

func TestMigrateModeAndRequestValidate(t *testing.T) {
	for m, want := range map[MigrateMode]bool{"none": true, "active-only": true, "all": true, "": false, "ALL": false} {
		if m.Valid() != want {
			t.Errorf("%q.Valid() = %v", m, !want)
		}
	}
	for _, tc := range []struct {
		r     EvacuationRequest
		field string
	}{
		{EvacuationRequest{Host: "h1"}, ""},
		{EvacuationRequest{Host: "h1", Migrate: MigrateAll, TargetHost: "h2"}, ""},
		{EvacuationRequest{}, "host"},
		{EvacuationRequest{Host: "h1", Migrate: "some"}, "migrate"},
		{EvacuationRequest{Host: "h1", TargetHost: "h1"}, "target_host"},
	} {
		err := tc.r.Validate()
		var fe *policy.FieldError
		if tc.field == "" && err != nil || tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field) {
			t.Errorf("Validate(%+v) = %v, want field %q", tc.r, err, tc.field)
		}
	}
}

// modeCluster has h01 with run1 (8 GiB), run2 (4), off1 (2, stopped) and
// sus1 (1, suspended, named "suspended-one"), and two empty hosts.
func modeCluster() *cluster.State {
	s := policytest.NewCluster(3, 64)
	policytest.AddVM(s, "run1", "h01", 8, cluster.PoweredOn)
	policytest.AddVM(s, "run2", "h01", 4, cluster.PoweredOn)
	policytest.AddVM(s, "off1", "h01", 2, cluster.PoweredOff)
	policytest.AddVM(s, "sus1", "h01", 1, cluster.Suspended)
	policytest.SetVM(s, "sus1", func(vm *cluster.VM) { vm.Name = "suspended-one" })
	return s
}

func TestPrecheckModesAndShutdown(t *testing.T) {
	for _, tc := range []struct {
		name                           string
		mode                           MigrateMode
		shutdown                       []string
		live, offline, down, stay, why string
	}{
		{name: "default is none", stay: "run1,run2,off1,sus1"},
		{name: "none", mode: MigrateNone, stay: "run1,run2,off1,sus1"},
		{name: "active-only", mode: MigrateActiveOnly, live: "run1,run2", stay: "off1,sus1"},
		{name: "all", mode: MigrateAll, live: "run1,run2", offline: "off1,sus1"},
		{name: "shutdown by name and id", mode: MigrateAll, shutdown: []string{"run2", "suspended-one"},
			live: "run1", offline: "off1", down: "run2,sus1"},
		{name: "stopped VM listed stays", mode: MigrateAll, shutdown: []string{"off1"},
			live: "run1,run2", offline: "sus1", stay: "off1"},
		{name: "shutdown under none", mode: MigrateNone, shutdown: []string{"run1"},
			down: "run1", stay: "run2,off1,sus1"},
		{name: "unknown shutdown VM blocks", mode: MigrateActiveOnly, shutdown: []string{"nope", "nope"},
			live: "run1,run2", stay: "off1,sus1", why: `shutdown_vms: "nope" is not a VM on host h01`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := modeCluster()
			p := PrecheckEvacuation(s, nil, EvacuationRequest{Host: "h01", Migrate: tc.mode, ShutdownVMs: tc.shutdown}, Options{})
			for _, c := range []struct {
				what      string
				got, want string
			}{
				{"live", ids(p.LiveMigrate), tc.live}, {"offline", ids(p.OfflineMigrate), tc.offline},
				{"shutdown", ids(p.Shutdown), tc.down}, {"stay", ids(p.Stay), tc.stay},
			} {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
				}
			}
			for _, it := range slices.Concat(p.LiveMigrate, p.OfflineMigrate) {
				if it.Target != "h02" && it.Target != "h03" {
					t.Errorf("%s planned to %q", it.VM, it.Target)
				}
			}
			if tc.why == "" && len(p.Blockers) > 0 || tc.why != "" && (len(p.Blockers) != 1 || p.Blockers[0].Reason != tc.why) {
				t.Errorf("blockers = %+v, want %q", p.Blockers, tc.why)
			}
		})
	}
}

func TestPrecheckUnmovableAndUnknownPower(t *testing.T) {
	for _, tc := range []struct {
		name     string
		power    cluster.PowerState
		mode     MigrateMode
		shutdown bool
		blocked  string // "" when not blocked
	}{
		{"running blocks", cluster.PoweredOn, MigrateActiveOnly, false, "cannot migrate: pinned to local GPU; list it in shutdown_vms"},
		{"running listed is shut down", cluster.PoweredOn, MigrateActiveOnly, true, ""},
		{"running under none stays", cluster.PoweredOn, MigrateNone, false, ""},
		{"stopped under all blocks", cluster.PoweredOff, MigrateAll, false, "cannot migrate: pinned to local GPU"},
		{"stopped under active-only stays", cluster.PoweredOff, MigrateActiveOnly, false, ""},
		{"unknown power blocks", "paused", MigrateActiveOnly, false, `power state "paused" unknown`},
		{"unknown power under none stays", "paused", MigrateNone, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := modeCluster()
			policytest.AddVM(s, "pin", "h01", 16, tc.power).Unmovable = "pinned to local GPU"
			if tc.power == "paused" {
				s.VMs["pin"].Unmovable = ""
			}
			req := EvacuationRequest{Host: "h01", Migrate: tc.mode}
			if tc.shutdown {
				req.ShutdownVMs = []string{"pin"}
			}
			p := PrecheckEvacuation(s, nil, req, Options{})
			if tc.blocked == "" {
				if len(p.Blockers) > 0 {
					t.Fatalf("blockers = %+v", p.Blockers)
				}
				return
			}
			if len(p.Blockers) != 1 || p.Blockers[0].VM != "pin" || !strings.HasPrefix(p.Blockers[0].Reason, tc.blocked) {
				t.Fatalf("blockers = %+v, want pin: %q", p.Blockers, tc.blocked)
			}
		})
	}
}

// TestPrecheckCapacity checks that the precheck reserves as it plans: two
// 64 GiB targets hold six 20 GiB VMs, the seventh is blocked, and a small VM
// after it still fits in what is left.
func TestPrecheckCapacity(t *testing.T) {
	s := policytest.NewCluster(3, 64)
	for _, id := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		policytest.AddVM(s, id, "h01", 20, cluster.PoweredOn)
	}
	policytest.AddVM(s, "small", "h01", 4, cluster.PoweredOn)
	p := PrecheckEvacuation(s, nil, EvacuationRequest{Host: "h01", Migrate: MigrateActiveOnly}, Options{})
	if got := ids(p.LiveMigrate); got != "a,b,c,d,e,f,small" {
		t.Errorf("live = %s", got)
	}
	if got := targets(p.LiveMigrate); got["h02"] != 4 || got["h03"] != 3 {
		t.Errorf("targets = %v", got)
	}
	want := "not enough capacity: no target: 2 hosts insufficient-memory, 1 host same-host"
	if len(p.Blockers) != 1 || p.Blockers[0].VM != "g" || p.Blockers[0].Reason != want {
		t.Errorf("blockers = %+v, want g: %q", p.Blockers, want)
	}
}

// TestPrecheckSharedLedger evacuates h01 and h02 at once into h03 and h04:
// with one ledger the second precheck sees what the first reserved, so no
// target is overcommitted; without it, both would plan the same room.
func TestPrecheckSharedLedger(t *testing.T) {
	s := policytest.NewCluster(4, 64)
	for _, h := range []string{"h01", "h02"} {
		policytest.SetHost(s, h, func(h *cluster.Host) { h.Admin, h.Maintenance = cluster.InMaintenance, cluster.MaintenanceEntering })
		for _, n := range []string{"a", "b", "c", "d"} {
			policytest.AddVM(s, h+n, h, 20, cluster.PoweredOn)
		}
	}
	l := NewLedger()
	first := PrecheckEvacuation(s, l, EvacuationRequest{Host: "h01", Migrate: MigrateAll}, Options{})
	if !first.OK() || len(first.LiveMigrate) != 4 || l.Total() != 0 {
		t.Fatalf("first precheck: %+v (ledger total %d)", first, l.Total())
	}
	for _, it := range first.LiveMigrate { // the controller starts them
		l.Reserve(it.VM, "h01", it.Target, it.MemoryBytes)
	}
	again := PrecheckEvacuation(s, l, EvacuationRequest{Host: "h01", Migrate: MigrateAll}, Options{})
	if !again.OK() || !slices.Equal(again.LiveMigrate, first.LiveMigrate) {
		t.Errorf("precheck while moving changed the plan: %+v", again)
	}
	second := PrecheckEvacuation(s, l, EvacuationRequest{Host: "h02", Migrate: MigrateAll}, Options{})
	if len(second.LiveMigrate) != 2 || len(second.Blockers) != 2 {
		t.Fatalf("second precheck: live %s, blockers %+v", ids(second.LiveMigrate), second.Blockers)
	}
	for _, it := range second.LiveMigrate {
		l.Reserve(it.VM, "h02", it.Target, it.MemoryBytes)
	}
	for _, h := range []string{"h03", "h04"} {
		if r := l.Reserved(h); r > 64*policytest.GiB {
			t.Errorf("%s overcommitted: %s reserved", h, formatBytes(r))
		}
	}
	if alone := PrecheckEvacuation(s, nil, EvacuationRequest{Host: "h02", Migrate: MigrateAll}, Options{}); !alone.OK() {
		t.Errorf("without the ledger h02 alone should fit: %+v", alone.Blockers)
	}
}
