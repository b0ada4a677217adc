package libvirt

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/drivers/libvirt/libvirttest"
	"github.com/herd-project/herd/internal/testport"
)

// TestFrozenHost stops one libvirtd (SIGSTOP): calls that need it end with
// an ErrTimeout-wrapped error within their deadline (+1 s), Inventory
// reports it not responding with the VMs it had, the other host works on,
// and once thawed the host is connected again.
func TestFrozenHost(t *testing.T) {
	f := libvirttest.StartFixture(t, 2)
	id := f.DefineVM(t, "lv2", "stuck", 64, true)
	other := f.DefineVM(t, "lv1", "free", 64, false)
	d := newTestDriver(t, f, nil)
	def := inventory(t, d).Copies(id)[0].Definition
	f.Freeze(t, "lv2")
	defer f.Thaw(t, "lv2") // before the fixture's cleanup kills it

	const deadline = 2 * time.Second
	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"PowerOff", func(ctx context.Context) error { return d.PowerOff(ctx, id) }},
		{"Recreate", func(ctx context.Context) error { _, err := d.Recreate(ctx, def, "lv2"); return err }},
		{"Migrate to it", func(ctx context.Context) error { return d.Migrate(ctx, other, "lv2", drivers.Offline) }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			err := c.call(testContext(t, deadline))
			took := time.Since(start)
			wantKind(t, c.name, err, drivers.ErrTimeout)
			if took > deadline+time.Second {
				t.Errorf("%s took %v, want at most %v", c.name, took, deadline+time.Second)
			}
		})
	}

	start := time.Now()
	inv := inventory(t, d)
	if took := time.Since(start); took > time.Second {
		t.Errorf("Inventory took %v with a frozen host, want it not to wait for it", took)
	}
	if h, _ := hostNamed(inv, "lv2"); h.Connection != drivers.NotResponding {
		t.Errorf("frozen host lv2 is %q, want %q", h.Connection, drivers.NotResponding)
	}
	if h, _ := hostNamed(inv, "lv1"); h.Connection != drivers.Connected {
		t.Errorf("host lv1 is %q, want %q", h.Connection, drivers.Connected)
	}
	if vms := inv.Copies(id); len(vms) != 1 || vms[0].Host != "lv2" {
		t.Errorf("VM %s of the frozen host listed as %+v, want its last known entry on lv2", id, vms)
	}
	if err := d.PowerOn(testContext(t, 10*time.Second), other); err != nil {
		t.Errorf("PowerOn on the healthy host: %v", err)
	}

	start = time.Now()
	state, err := d.ProbeHost(testContext(t, deadline), "lv2")
	if err != nil || state != drivers.NotResponding || time.Since(start) > deadline+time.Second {
		t.Errorf("ProbeHost(frozen) = %q, %v after %v; want %q within %v", state, err, time.Since(start), drivers.NotResponding, deadline+time.Second)
	}

	f.Thaw(t, "lv2")
	eventually(t, 15*time.Second, "lv2 connected again", func() error {
		if state, err := d.ProbeHost(testContext(t, 2*time.Second), "lv2"); state != drivers.Connected {
			return fmt.Errorf("ProbeHost = %q, %v", state, err)
		}
		return nil
	})
	if err := d.PowerOff(testContext(t, 10*time.Second), id); err != nil {
		t.Errorf("PowerOff after thaw: %v", err)
	}
}

// TestHostDownAndBack starts the driver with one host unreachable, then
// kills a host's libvirtd and starts it again: New does not fail, Inventory
// reports the hosts disconnected, and the driver reconnects by itself.
func TestHostDownAndBack(t *testing.T) {
	f := libvirttest.StartFixture(t, 2)
	id := f.DefineVM(t, "lv2", "survivor", 64, false)
	port, err := testport.Port()
	if err != nil {
		t.Fatal(err)
	}
	d := newTestDriver(t, f, func(c *Config) {
		c.KeepaliveInterval = 500 * time.Millisecond
		c.Hosts = append(c.Hosts, HostConfig{Name: "ghost", URI: fmt.Sprintf("qemu+tcp://127.0.0.1:%d/system", port)})
	})
	inv := inventory(t, d)
	if h, ok := hostNamed(inv, "ghost"); !ok || h.Connection != drivers.Disconnected {
		t.Errorf("unreachable host listed as %+v (found %v), want disconnected", h, ok)
	}
	state, err := d.ProbeHost(testContext(t, 5*time.Second), "ghost")
	if err != nil || state != drivers.Disconnected {
		t.Errorf("ProbeHost(ghost) = %q, %v; want %q", state, err, drivers.Disconnected)
	}
	_, err = d.Recreate(testContext(t, 5*time.Second), []byte("<domain><name>x</name></domain>"), "ghost")
	wantKind(t, "Recreate on ghost", err, drivers.ErrUnreachable)

	f.Kill(t, "lv2")
	eventually(t, 5*time.Second, "lv2 seen down", func() error {
		if h, _ := hostNamed(inventory(t, d), "lv2"); h.Connection == drivers.Connected {
			return errors.New("lv2 still connected")
		}
		return nil
	})
	f.Restart(t, "lv2")
	eventually(t, 10*time.Second, "lv2 reconnected", func() error {
		inv := inventory(t, d)
		if h, _ := hostNamed(inv, "lv2"); h.Connection != drivers.Connected {
			return fmt.Errorf("lv2 is %s", h.Connection)
		}
		if len(inv.Copies(id)) != 1 {
			return fmt.Errorf("VM %s not listed", id)
		}
		return nil
	})
}
