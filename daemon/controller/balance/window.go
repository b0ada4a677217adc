package balance

import (
	"context"
	"fmt"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/policy"
)

// WindowState is the named window at now; nil when name is empty or the
// policy no longer defines it (validation keeps that from happening).
func WindowState(doc *policy.Document, name string, now time.Time) *api.WindowState {
	if name == "" {
		return nil
	}
	s, err := doc.Window(name)
	if err != nil {
		return nil
	}
	open, sp := s.At(now)
	return &api.WindowState{Name: name, Open: open, Opens: sp.Opens.UTC(), Closes: sp.Closes.UTC()}
}

// balanceWindow fills the plan's window (balancing.window) and, when
// automatic balancing has moves but the window is closed, says it waits:
// automatic balancing starts moves only while the window is open (a
// balance operation started inside it runs to its end).
func balanceWindow(doc *policy.Document, plan *api.BalancePlan, now time.Time) {
	w := WindowState(doc, doc.Balancing.Window, now)
	plan.Window = w
	if w != nil && !w.Open && doc.Balancing.Mode == policy.BalanceAutomatic && len(plan.Moves) > 0 {
		w.Waiting = fmt.Sprintf("automatic balancing waits for window %s: %d moves start when it opens at %s (in %s)",
			w.Name, len(plan.Moves), w.Opens.Format(time.RFC3339), w.Opens.Sub(now).Round(time.Second))
	}
}

// noteWindowWait logs, once per opening waited for, that automatic
// balancing waits for its window (balance.window_wait).
func (b *Controller) noteWindowWait(ctx context.Context, w *api.WindowState) {
	if w == nil || w.Waiting == "" || b.waitedFor.Equal(w.Opens) {
		return
	}
	b.waitedFor = w.Opens
	b.d.Record(ctx, cluster.NewEvent("balance.window_wait", "balancer", "", "", w.Waiting))
}

// untilWindow shortens a sleep of interval so that the balancer wakes when
// the window it waits for opens.
func untilWindow(interval time.Duration, w *api.WindowState, now time.Time) time.Duration {
	if w == nil || w.Open {
		return interval
	}
	if d := w.Opens.Sub(now); d > 0 && d < interval {
		return d
	}
	return interval
}
