package drivers

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// A graceful shutdown asks the guest and waits; it stops the VM at once
// only when the guest is too slow or cannot be asked, never when the VM is
// already off or the error says to give up.
func TestGracefulShutdown(t *testing.T) {
	refused, gone := errors.New("no guest tools"), errors.New("VM gone")
	for _, tc := range []struct {
		name      string
		timeout   time.Duration // of ctx; 0 means none (Wait applies)
		askErr    error
		offAfter  int // polls until off; -1 never
		wantErr   error
		wantAsk   bool
		wantPower bool
	}{
		{name: "guest shuts down", offAfter: 2, wantAsk: true},
		{name: "guest too slow", timeout: 300 * time.Millisecond, offAfter: -1, wantAsk: true, wantPower: true},
		{name: "no deadline: Wait applies", offAfter: -1, wantAsk: true, wantPower: true},
		{name: "guest cannot be asked", askErr: refused, wantAsk: true, wantPower: true},
		{name: "already off", askErr: errOff, wantAsk: true},
		{name: "fatal error", askErr: gone, wantErr: gone, wantAsk: true},
		{name: "deadline within the margin", timeout: 50 * time.Millisecond, wantPower: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			var asked, powered atomic.Bool
			var polls atomic.Int32
			err := GracefulShutdown{
				Wait: 300 * time.Millisecond, Margin: 100 * time.Millisecond, Poll: 10 * time.Millisecond,
				Log: slog.New(slog.DiscardHandler), HardOff: "powering off",
				Ask: func(context.Context) error { asked.Store(true); return tc.askErr },
				AskFailed: func(err error) (bool, error) {
					if err == errOff {
						return true, nil
					}
					if err == gone {
						return false, err
					}
					return false, nil
				},
				IsOff: func(context.Context) (bool, error) {
					n := polls.Add(1)
					return tc.offAfter >= 0 && int(n) > tc.offAfter, nil
				},
				PowerOff: func(context.Context) error { powered.Store(true); return nil },
			}.Run(ctx)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("Run: %v, want %v", err, tc.wantErr)
			}
			if asked.Load() != tc.wantAsk || powered.Load() != tc.wantPower {
				t.Fatalf("asked the guest %v (want %v), powered off %v (want %v)", asked.Load(), tc.wantAsk, powered.Load(), tc.wantPower)
			}
		})
	}
}

var errOff = errors.New("not running")
