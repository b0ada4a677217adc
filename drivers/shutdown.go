package drivers

import (
	"context"
	"log/slog"
	"time"
)

// GracefulShutdown is how a driver stops a VM with its guest's help: ask
// the guest to shut down, poll until the VM is off, and stop it at once when
// the deadline (ctx's, or Wait from now) comes within Margin, or when the
// guest cannot be asked. Each driver supplies the calls.
type GracefulShutdown struct {
	// Wait bounds the shutdown when ctx has no deadline; Margin is kept
	// before the deadline for the hard stop; Poll is how often IsOff is
	// asked.
	Wait, Margin, Poll time.Duration
	// Ask asks the guest to shut down.
	Ask func(ctx context.Context) error
	// AskFailed judges an error of Ask: off when the VM is not running
	// (nothing to do), or a fatal error to give up with; otherwise the VM
	// is stopped at once.
	AskFailed func(err error) (off bool, fatal error)
	// IsOff reports whether the VM has stopped.
	IsOff func(ctx context.Context) (bool, error)
	// Canceled is the error when ctx ends while waiting (ctx.Err() when
	// nil).
	Canceled func(ctx context.Context) error
	// PowerOff stops the VM at once.
	PowerOff func(ctx context.Context) error
	// Log says how the VM stopped; HardOff names the hard stop in it
	// ("destroying", "powering off").
	Log     *slog.Logger
	HardOff string
}

// Run shuts the VM down, by the guest if it can, by PowerOff otherwise.
func (g GracefulShutdown) Run(ctx context.Context) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(g.Wait)
	}
	if time.Until(deadline) > g.Margin {
		if err := g.Ask(ctx); err != nil {
			off, fatal := g.AskFailed(err)
			if off {
				return nil
			}
			if fatal != nil {
				return fatal
			}
			g.Log.Warn("guest shutdown refused, "+g.HardOff, "err", err)
		} else {
			done, err := g.waitOff(ctx, deadline)
			if err != nil {
				return err
			}
			if done {
				g.Log.Info("guest shut down")
				return nil
			}
			g.Log.Warn("guest did not shut down in time, " + g.HardOff)
		}
	}
	return g.PowerOff(ctx)
}

// waitOff polls IsOff until the VM is off (done) or until deadline is
// within Margin (not done, no error).
func (g GracefulShutdown) waitOff(ctx context.Context, deadline time.Time) (bool, error) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if g.Canceled != nil {
				return false, g.Canceled(ctx)
			}
			return false, ctx.Err()
		case <-timer.C:
		}
		off, err := g.IsOff(ctx)
		if err != nil || off {
			return off, err
		}
		left := time.Until(deadline) - g.Margin
		if left <= 0 {
			return false, nil
		}
		timer.Reset(min(g.Poll, left))
	}
}
