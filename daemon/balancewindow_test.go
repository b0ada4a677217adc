package daemon

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

// fakeClock is a wall clock a test sets by hand: it runs on from the time
// set, as a clock does, so that durations the controllers measure pass.
type fakeClock struct{ offset atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.Set(t)
	return c
}

func (c *fakeClock) Now() time.Time  { return time.Now().Add(time.Duration(c.offset.Load())).UTC() }
func (c *fakeClock) Set(t time.Time) { c.offset.Store(int64(time.Until(t))) }
func (c *fakeClock) drive(s *Server) { s.clock.set(c.Now) }

// balanceOps counts the balance operations.
func balanceOps(t *testing.T, c *api.Client) int {
	t.Helper()
	ops, err := c.Operations(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, o := range ops {
		if o.Kind == api.OpBalance {
			n++
		}
	}
	return n
}

// eventsOfType lists the logged events of one type.
func eventsOfType(t testing.TB, c *api.Client, typ string) []api.Event {
	var out []api.Event
	for _, e := range queryEvents(t, c, api.EventQuery{}) {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// TestBalanceWaitsForWindow: automatic balancing held to a window that is
// closed plans its moves but starts none, says in the plan and once in the
// event log that it waits and until when; once the (driven) clock is inside
// the window the moves start.
func TestBalanceWaitsForWindow(t *testing.T) {
	clk := newFakeClock(time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)) // a Monday, 01:00 UTC
	dev, c := startDevWith(t, 4, 24, nil, func(p *policy.Document) {
		p.Windows = []policy.Window{{Name: "nightly", Start: "03:00", Duration: time.Hour, TimeZone: "Europe/Berlin"}}
		p.Balancing.Mode, p.Balancing.Interval, p.Balancing.Threshold = policy.BalanceAutomatic, time.Second, 0.02
		p.Balancing.Window = "nightly"
		p.Placement.MemoryReserve = 0.5
	})
	clk.drive(dev.Server)
	ctx := context.Background()
	crowd(t, dev, c, 12)

	var plan *api.BalancePlan
	testutil.WaitFor(t, 30*time.Second, "the balancer to wait for its window", func() bool {
		if len(eventsOfType(t, c, "balance.window_wait")) == 0 {
			return false
		}
		plan, _ = c.BalancePlan(ctx)
		return true
	})
	// 03:00 in Berlin (CET) is 02:00 UTC.
	opens := time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)
	w := plan.Window
	if w == nil || w.Open || !w.Opens.Equal(opens) || !w.Closes.Equal(opens.Add(time.Hour)) || len(plan.Moves) == 0 ||
		!strings.Contains(w.Waiting, "waits for window nightly") || !strings.Contains(w.Waiting, "2026-03-02T02:00:00Z (in ") {
		t.Fatalf("plan while the window is closed: %+v window %+v", plan, w)
	}
	// Three more rounds (interval 1s) with the window closed start nothing
	// and log the wait no second time.
	time.Sleep(3500 * time.Millisecond)
	if n := balanceOps(t, c); n != 0 {
		t.Fatalf("%d balance operations started outside the window", n)
	}
	if waits := eventsOfType(t, c, "balance.window_wait"); len(waits) != 1 || !strings.Contains(waits[0].Message, "waits for window nightly") {
		t.Errorf("balance.window_wait events, want one: %+v", waits)
	}

	// The window opens: the moves start, and the plan says it is open.
	clk.Set(opens.Add(30 * time.Second))
	testutil.WaitFor(t, 30*time.Second, "balancing inside the window", func() bool { return balanceOps(t, c) > 0 })
	p, err := c.BalancePlan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.Window == nil || !p.Window.Open || !p.Window.Closes.Equal(opens.Add(time.Hour)) || p.Window.Waiting != "" {
		t.Errorf("window inside it: %+v", p.Window)
	}
}
