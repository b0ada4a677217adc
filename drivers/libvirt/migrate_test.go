package libvirt

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/drivers/libvirt/libvirttest"
)

// TestLiveMigration moves a running VM between two libvirtd through the
// driver: afterwards it runs on the target under the same UUID and is
// undefined on the source; moving it to where it is does nothing.
func TestLiveMigration(t *testing.T) {
	f := libvirttest.StartFixture(t, 2)
	id := f.DefineVM(t, "lv1", "mig1", 64, true)
	d := newTestDriver(t, f, nil)

	start := time.Now()
	if err := d.Migrate(testContext(t, time.Minute), id, "lv2", drivers.Live); err != nil {
		t.Fatalf("Migrate to lv2: %v", err)
	}
	t.Logf("live migration took %v", time.Since(start))
	wantState(t, f, "lv2", id, drivers.PoweredOn)
	wantState(t, f, "lv1", id, "")
	vms := inventory(t, d).Copies(id)
	if len(vms) != 1 || vms[0].Host != "lv2" || vms[0].Power != drivers.PoweredOn {
		t.Errorf("inventory after migration lists %+v, want it running on lv2 only", vms)
	}

	if err := d.Migrate(testContext(t, 10*time.Second), id, "lv2", drivers.Live); err != nil {
		t.Errorf("Migrate to the host it is on: %v, want nil", err)
	}
	wantState(t, f, "lv2", id, drivers.PoweredOn)
}

// TestLiveMigrationAbort cuts short live migrations that cannot finish in
// time (random guest memory, a 1 MiB/s cap): each ends with an error of
// the right kind, soon after ctx, and the VM runs on the source still.
func TestLiveMigrationAbort(t *testing.T) {
	f := libvirttest.StartFixture(t, 2)
	d := newTestDriver(t, f, func(c *Config) { c.Bandwidth = 1 })
	tests := []struct {
		name   string
		ctx    func() (context.Context, context.CancelFunc)
		freeze bool // freeze the target's libvirtd mid-migration
		want   error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 3*time.Second)
		}, false, drivers.ErrTimeout},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(2*time.Second, cancel)
			return ctx, cancel
		}, false, context.Canceled},
		{"target frozen", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 4*time.Second)
		}, true, drivers.ErrTimeout},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := f.DefineDomain(t, "lv1", libvirttest.VMSpec{Name: fmt.Sprintf("slow%d", i), MemoryMiB: 96, FillMiB: 48, Running: true})
			if tt.freeze {
				time.AfterFunc(time.Second, func() { f.Freeze(t, "lv2") })
			}
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			err := d.Migrate(ctx, id, "lv2", drivers.Live)
			took := time.Since(start)
			if tt.freeze {
				f.Thaw(t, "lv2")
			}
			t.Logf("Migrate returned after %v: %v", took, err)
			if err == nil {
				t.Fatal("Migrate succeeded, want it aborted")
			}
			wantKind(t, "Migrate", err, tt.want)
			if limit := 4*time.Second + abortTimeout + abortGrace; took > limit {
				t.Errorf("Migrate took %v, want at most %v", took, limit)
			}
			wantState(t, f, "lv1", id, drivers.PoweredOn)
			// The VM never runs twice. When the target was frozen, its
			// paused incoming copy may outlive the abort until its own
			// libvirtd notices; it never runs.
			eventually(t, 15*time.Second, "no running copy on the target", func() error {
				s, ok := f.DomainStates(t, "lv2")[id]
				switch {
				case !ok:
					return nil
				case s == drivers.PoweredOn:
					t.Fatalf("VM %s runs on the source and on the target", id)
				case tt.freeze:
					return nil
				}
				return fmt.Errorf("lv2 has VM %s (%s)", id, s)
			})
		})
	}
}

// TestOfflineMigration moves a shut-off VM: it is defined on the target,
// shut off, under the same UUID, and undefined on the source. A running VM
// cannot move offline, nor a shut-off one live.
func TestOfflineMigration(t *testing.T) {
	f := libvirttest.StartFixture(t, 2)
	off := f.DefineVM(t, "lv1", "cold1", 64, false)
	run := f.DefineVM(t, "lv1", "hot1", 64, true)
	d := newTestDriver(t, f, nil)

	if err := d.Migrate(testContext(t, 20*time.Second), off, "lv2", drivers.Offline); err != nil {
		t.Fatalf("Migrate offline: %v", err)
	}
	wantState(t, f, "lv2", off, drivers.PoweredOff)
	wantState(t, f, "lv1", off, "")
	if err := d.Migrate(testContext(t, 20*time.Second), off, "lv2", drivers.Offline); err != nil {
		t.Errorf("Migrate offline to the host it is on: %v, want nil", err)
	}

	wrong := []struct {
		name string
		id   string
		kind drivers.MigrationKind
	}{
		{"running VM offline", run, drivers.Offline},
		{"shut-off VM live", off, drivers.Live},
	}
	for _, tt := range wrong {
		t.Run(tt.name, func(t *testing.T) {
			err := d.Migrate(testContext(t, 20*time.Second), tt.id, "lv1", tt.kind)
			if err == nil {
				t.Fatal("Migrate succeeded, want an error")
			}
			if errors.Is(err, drivers.ErrNotFound) {
				t.Errorf("Migrate: %v, want a state error, not ErrNotFound", err)
			}
		})
	}
	wantState(t, f, "lv1", run, drivers.PoweredOn)
	wantState(t, f, "lv2", off, drivers.PoweredOff)
}

// TestLiveMigrationTakenOver: the caller of a live migration goes away (a
// leader killed: its connections close) while the source's libvirtd goes
// on with the migration. Another caller asked to move the VM to the same
// target waits for that migration to end instead of seeing the VM on two
// hosts, and finds it done.
func TestLiveMigrationTakenOver(t *testing.T) {
	f := libvirttest.StartFixture(t, 2)
	id := f.DefineDomain(t, "lv1", libvirttest.VMSpec{Name: "handover", MemoryMiB: 96, FillMiB: 48, Running: true})
	cfg := fixtureConfig(f)
	cfg.Bandwidth = 8
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	first, err := New(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- first.Migrate(context.Background(), id, "lv2", drivers.Live) }()
	waitIncoming(t, f, "lv2", id)
	first.Close()
	if err := <-done; err == nil {
		t.Log("the first migration finished before its caller went away")
	}
	second := newTestDriver(t, f, nil)
	start := time.Now()
	if err := second.Migrate(testContext(t, 60*time.Second), id, "lv2", drivers.Live); err != nil {
		t.Fatalf("Migrate after the first caller went away: %v", err)
	}
	t.Logf("the second Migrate returned after %v", time.Since(start).Round(time.Millisecond))
	wantState(t, f, "lv2", id, drivers.PoweredOn)
	// The source's libvirtd ends the migration it drives on its own: it
	// undefines its shut-off copy once the target has confirmed, which may
	// come just after the copy on the target runs.
	eventually(t, 10*time.Second, "the source's copy undefined", func() error {
		if state, ok := f.DomainStates(t, "lv1")[id]; ok {
			return fmt.Errorf("host lv1 still has VM %s (%s)", id, state)
		}
		return nil
	})
}

// TestLiveMigrationSourceDies: the source host crashes during a live
// migration. The paused incoming copy on the target is not the VM, during
// the migration (paused, reason migration) or after it failed (paused,
// reason unknown): a call to move the VM there does not take it for a
// finished migration, it fails, and nothing runs on the target.
func TestLiveMigrationSourceDies(t *testing.T) {
	f := libvirttest.StartFixture(t, 2)
	id := f.DefineDomain(t, "lv1", libvirttest.VMSpec{Name: "orphan", MemoryMiB: 96, FillMiB: 48, Running: true})
	first := newTestDriver(t, f, func(c *Config) { c.Bandwidth = 4 })
	done := make(chan error, 1)
	go func() { done <- first.Migrate(context.Background(), id, "lv2", drivers.Live) }()
	waitIncoming(t, f, "lv2", id)
	f.Kill(t, "lv1")
	err := first.Migrate(testContext(t, 60*time.Second), id, "lv2", drivers.Live)
	if err == nil {
		t.Fatal("Migrate succeeded while the source died in the middle of the copy")
	}
	t.Logf("Migrate after the source died: %v", err)
	if err := <-done; err == nil {
		t.Error("the interrupted migration reported success")
	}
	// The incoming copy never runs, and goes once lv2 sees the migration
	// failed.
	eventually(t, 15*time.Second, "no copy left on lv2", func() error {
		s, ok := f.DomainStates(t, "lv2")[id]
		switch {
		case !ok:
			return nil
		case s == drivers.PoweredOn:
			t.Fatalf("the incoming copy of VM %s runs on lv2", id)
		}
		return fmt.Errorf("lv2 still has VM %s (%s)", id, s)
	})
}

// waitIncoming waits for the incoming copy of VM id on host.
func waitIncoming(t *testing.T, f *libvirttest.Fixture, host, id string) {
	t.Helper()
	eventually(t, 10*time.Second, "the incoming copy on "+host, func() error {
		if _, ok := f.DomainStates(t, host)[id]; !ok {
			return fmt.Errorf("not yet on %s", host)
		}
		return nil
	})
}
