package libvirt

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/drivers/libvirt/libvirttest"
)

const mib = int64(1) << 20

// testLogger logs to the test output when -v and LIBVIRT_TEST_LOG are set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("LIBVIRT_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// fixtureConfig is a driver configuration for every host of f, with QEMU
// migration streams on 127.0.0.1 and test-sized timeouts.
func fixtureConfig(f *libvirttest.Fixture) Config {
	cfg := Config{CallTimeout: libvirttest.CallTimeout, KeepaliveInterval: libvirttest.KeepaliveInterval}
	for _, h := range f.Hosts() {
		cfg.Hosts = append(cfg.Hosts, HostConfig{Name: h.Name, URI: h.URI, Group: h.Group, MigrationAddress: h.MigrationAddress})
	}
	return cfg
}

// newTestDriver connects a driver to every host of f; change edits its
// configuration first.
func newTestDriver(t testing.TB, f *libvirttest.Fixture, change func(*Config)) *Driver {
	t.Helper()
	cfg := fixtureConfig(f)
	if change != nil {
		change(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := New(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

func testContext(t testing.TB, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

func inventory(t testing.TB, d *Driver) *drivers.Inventory {
	t.Helper()
	inv, err := d.Inventory(testContext(t, 20*time.Second))
	if err != nil {
		t.Fatalf("Inventory: %v", err)
	}
	return inv
}

func hostNamed(inv *drivers.Inventory, name string) (drivers.Host, bool) {
	for _, h := range inv.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return drivers.Host{}, false
}

// wantState fails t unless host's libvirtd has domain id in state want
// ("" meaning it has no such domain).
func wantState(t testing.TB, f *libvirttest.Fixture, host, id string, want drivers.PowerState) {
	t.Helper()
	got, ok := f.DomainStates(t, host)[id]
	switch {
	case want == "" && ok:
		t.Errorf("host %s still has VM %s (%s)", host, id, got)
	case want != "" && !ok:
		t.Errorf("host %s has no VM %s, want it %s", host, id, want)
	case got != want:
		t.Errorf("VM %s on host %s is %s, want %s", id, host, got, want)
	}
}

// eventually retries check every 200 ms until it passes or timeout.
func eventually(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not so after %v: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func wantKind(t testing.TB, what string, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Errorf("%s: error %v, want one matching %v", what, err, kind)
	}
}
