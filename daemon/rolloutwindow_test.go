package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/policy"
)

// TestRolloutHeldToWindow drives the clock of a rollout held to a window
// (02:00–03:00 UTC): while it is closed no host starts, and the rollout
// and an event say why and until when; when it opens the first host
// starts; when it closes during that host's evacuation the host still
// finishes its whole step, and the next host waits for the next opening.
func TestRolloutHeldToWindow(t *testing.T) {
	clk := newFakeClock(time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)) // a Monday, 01:00 UTC
	dev, c := startDevWith(t, 3, 9, map[string]int{"RelocateVM_Task": 700}, func(p *policy.Document) {
		rolloutPolicy()(p)
		p.Windows = []policy.Window{{Name: "nightly", Start: "02:00", Duration: time.Hour}}
	})
	clk.drive(dev.Server)
	ctx := context.Background()
	r, err := c.StartRollout(ctx, api.RolloutRequest{All: true, Order: "listed", Window: "nightly"})
	if err != nil {
		t.Fatal(err)
	}
	h1, h2 := r.Hosts[0].Host, r.Hosts[1].Host
	const closed = "window nightly is closed: the next host step starts when it opens at "
	r = waitRollout(t, c, r.ID, 30*time.Second, "the rollout to wait for its window", func(r *api.Rollout) bool {
		return strings.Contains(r.Note, closed+"2026-03-02T02:00:00Z")
	})
	for _, h := range r.Hosts {
		if h.Phase != "pending" {
			t.Fatalf("host %s is %s while the window is closed", h.Host, h.Phase)
		}
	}
	if !hasEvent(queryEvents(t, c, api.EventQuery{Operation: r.ID}), "rollout.waiting", closed) {
		t.Errorf("no rollout.waiting event says the window is closed")
	}

	// 02:00:30: open. The first host starts; then the window closes while
	// its evacuation runs.
	clk.Set(time.Date(2026, 3, 2, 2, 0, 30, 0, time.UTC))
	waitRollout(t, c, r.ID, 30*time.Second, h1+" entering maintenance", func(r *api.Rollout) bool { return phaseOf(r, h1) == "entering" })
	clk.Set(time.Date(2026, 3, 2, 3, 0, 0, 0, time.UTC))
	r = waitRollout(t, c, r.ID, 60*time.Second, h1+" in its work although the window closed", func(r *api.Rollout) bool { return phaseOf(r, h1) == "working" })
	// A host in its rollout work may go down: simulating its failure says
	// it would be neither fenced nor recovered.
	if sim, err := c.SimulateFailure(ctx, []string{h1}); err != nil || sim.Hosts[0].Simulated || !strings.Contains(sim.Hosts[0].Note, "rollout work") || len(sim.Steps) != 0 {
		t.Errorf("simulated failure of a host in its rollout work: %+v, %v", sim, err)
	}
	if _, err := c.ContinueRollout(ctx, r.ID, h1); err != nil {
		t.Fatal(err)
	}
	r = waitRollout(t, c, r.ID, 60*time.Second, h1+" done and the rollout waiting for the next opening", func(r *api.Rollout) bool {
		return phaseOf(r, h1) == "done" && strings.Contains(r.Note, closed+"2026-03-03T02:00:00Z")
	})
	if p := phaseOf(r, h2); p != "pending" {
		t.Fatalf("%s is %s with the window closed", h2, p)
	}

	// The next night it goes on.
	clk.Set(time.Date(2026, 3, 3, 2, 0, 0, 0, time.UTC))
	waitRollout(t, c, r.ID, 30*time.Second, h2+" started in the next opening, the rollout no longer waiting for the window", func(r *api.Rollout) bool {
		return phaseOf(r, h2) != "pending" && !strings.Contains(r.Note, "window")
	})
}
