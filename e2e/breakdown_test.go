//go:build e2e

package e2e

import (
	"fmt"
	"sort"
	"time"

	"github.com/herd-project/herd/daemon/api"
)

// recoveryBreakdown splits a crash's recovery, from start, into when the
// recovery operation started, when its first and last recreation started,
// and the median and longest recreation (step.started to step.done).
func recoveryBreakdown(evs []api.Event, start time.Time) map[string]time.Duration {
	out := map[string]time.Duration{}
	began := map[string]time.Time{}
	var steps []time.Duration
	var first, last time.Time
	for _, e := range evs {
		switch e.Type {
		case "recovery.started":
			if _, ok := out["op_started"]; !ok {
				out["op_started"] = e.Time.Sub(start)
			}
		case "step.started":
			if _, ok := began[e.VM]; !ok {
				began[e.VM] = e.Time
				if first.IsZero() {
					first = e.Time
				}
				last = e.Time
			}
		case "step.done":
			if b, ok := began[e.VM]; ok {
				steps = append(steps, e.Time.Sub(b))
			}
		}
	}
	if !first.IsZero() {
		out["first_step"], out["last_step"] = first.Sub(start), last.Sub(start)
	}
	if len(steps) > 0 {
		sort.Slice(steps, func(i, j int) bool { return steps[i] < steps[j] })
		out["step_median"], out["step_max"] = steps[len(steps)/2], steps[len(steps)-1]
	}
	return out
}

// recoverySteps lists each recreation of a crash's recovery, from start:
// when it started, when it was done, and what the done event says.
func recoverySteps(evs []api.Event, start time.Time) []string {
	began := map[string]time.Time{}
	var out []string
	for _, e := range evs {
		switch e.Type {
		case "step.started":
			if _, ok := began[e.VM]; !ok {
				began[e.VM] = e.Time
			}
		case "step.done":
			if b, ok := began[e.VM]; ok {
				out = append(out, fmt.Sprintf("+%.2fs → +%.2fs (%.2fs) %s", b.Sub(start).Seconds(), e.Time.Sub(start).Seconds(), e.Time.Sub(b).Seconds(), e.Message))
			}
		}
	}
	return out
}
