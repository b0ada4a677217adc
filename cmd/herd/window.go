package main

import (
	"fmt"
	"time"

	"github.com/herd-project/herd/daemon/api"
)

// windowLine says whether a maintenance window is open at now, and until or
// from when; with what waits for it, if anything does.
func windowLine(w *api.WindowState, now time.Time) string {
	until := func(t time.Time) string {
		return fmt.Sprintf("%s (in %s)", t.UTC().Format("2006-01-02 15:04 MST"), t.Sub(now).Round(time.Minute))
	}
	line := fmt.Sprintf("Window %s: closed, opens %s", esc(w.Name), until(w.Opens))
	if w.Open {
		line = fmt.Sprintf("Window %s: open, closes %s", esc(w.Name), until(w.Closes))
	}
	if w.Waiting != "" {
		line += "\nWaiting: " + esc(w.Waiting)
	}
	return line
}
