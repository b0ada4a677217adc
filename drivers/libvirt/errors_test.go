package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/drivers/libvirt/libvirttest"
)

// TestClassify maps libvirt error codes and transport failures to the
// drivers error kinds, keeping the original error matchable.
func TestClassify(t *testing.T) {
	lverr := func(code golibvirt.ErrorNumber) error {
		return golibvirt.Error{Code: uint32(code), Message: fmt.Sprintf("libvirt error %d", code)}
	}
	tests := []struct {
		name string
		err  error
		want error // nil: no kind
	}{
		{"no domain", lverr(golibvirt.ErrNoDomain), drivers.ErrNotFound},
		{"no support", lverr(golibvirt.ErrNoSupport), drivers.ErrNotSupported},
		{"operation unsupported", lverr(golibvirt.ErrOperationUnsupported), drivers.ErrNotSupported},
		{"operation timeout", lverr(golibvirt.ErrOperationTimeout), drivers.ErrTimeout},
		{"rpc", lverr(golibvirt.ErrRPC), drivers.ErrUnreachable},
		{"no connect", lverr(golibvirt.ErrNoConnect), drivers.ErrUnreachable},
		{"operation invalid", lverr(golibvirt.ErrOperationInvalid), nil},
		{"wrapped no domain", fmt.Errorf("look up: %w", lverr(golibvirt.ErrNoDomain)), drivers.ErrNotFound},
		{"interrupted", golibvirt.ErrInterrupted, drivers.ErrUnreachable},
		{"unknown procedure", golibvirt.ErrUnsupported, drivers.ErrNotSupported},
		{"closed socket", syscall.EINVAL, drivers.ErrUnreachable},
		{"eof", io.EOF, drivers.ErrUnreachable},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, drivers.ErrUnreachable},
		{"deadline", context.DeadlineExceeded, drivers.ErrTimeout},
		{"plain", errors.New("boom"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.err)
			if !errors.Is(got, tt.err) {
				t.Errorf("classify(%v) = %v, lost the original error", tt.err, got)
			}
			for _, kind := range []error{drivers.ErrNotFound, drivers.ErrNotSupported, drivers.ErrTimeout, drivers.ErrUnreachable} {
				if errors.Is(got, kind) != (kind == tt.want) {
					t.Errorf("classify(%v) = %v: matches %v is %v, want %v", tt.err, got, kind, !(kind == tt.want), kind == tt.want)
				}
			}
		})
	}
}

// TestDriverErrors checks the errors callers get from a live libvirtd:
// unknown or malformed VM IDs and unknown hosts are ErrNotFound, an unknown
// migration kind ErrNotSupported, each with the operation in its message.
func TestDriverErrors(t *testing.T) {
	f := libvirttest.StartFixture(t, 1)
	id := f.DefineVM(t, "lv1", "known", 64, false)
	d := newTestDriver(t, f, nil)
	const unknown = "00000000-1111-2222-3333-444444444444"
	tests := []struct {
		name    string
		call    func(ctx context.Context) error
		kind    error
		context string
	}{
		{"power on unknown", func(ctx context.Context) error { return d.PowerOn(ctx, unknown) }, drivers.ErrNotFound, "power on " + unknown},
		{"power off unknown", func(ctx context.Context) error { return d.PowerOff(ctx, unknown) }, drivers.ErrNotFound, "power off " + unknown},
		{"shutdown unknown", func(ctx context.Context) error { return d.Shutdown(ctx, unknown) }, drivers.ErrNotFound, "shut down " + unknown},
		{"destroy unknown", func(ctx context.Context) error { return d.Destroy(ctx, unknown, "lv1") }, drivers.ErrNotFound, "destroy " + unknown},
		{"migrate unknown", func(ctx context.Context) error { return d.Migrate(ctx, unknown, "lv1", drivers.Live) }, drivers.ErrNotFound, "migrate " + unknown + " to lv1"},
		{"malformed id", func(ctx context.Context) error { return d.PowerOn(ctx, "not-a-uuid") }, drivers.ErrNotFound, "power on not-a-uuid"},
		{"unknown host", func(ctx context.Context) error { return d.Migrate(ctx, id, "nowhere", drivers.Offline) }, drivers.ErrNotFound, "migrate " + id + " to nowhere"},
		{"unknown kind", func(ctx context.Context) error { return d.Migrate(ctx, id, "lv1", "teleport") }, drivers.ErrNotSupported, "migrate " + id},
		{"probe unknown host", func(ctx context.Context) error { _, err := d.ProbeHost(ctx, "nowhere"); return err }, drivers.ErrNotFound, "probe host nowhere"},
		{"recreate from junk", func(ctx context.Context) error { _, err := d.Recreate(ctx, []byte("<nope"), "lv1"); return err }, nil, "recreate VM on lv1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(testContext(t, 10*time.Second))
			if err == nil {
				t.Fatal("no error")
			}
			if tt.kind != nil {
				wantKind(t, tt.name, err, tt.kind)
			}
			if msg := err.Error(); len(msg) < len(tt.context) || msg[:len(tt.context)] != tt.context {
				t.Errorf("error %q does not start with %q", msg, tt.context)
			}
		})
	}
}
