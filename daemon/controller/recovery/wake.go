package recovery

import (
	"context"
	"time"
)

// recoveryRound is how often the recovery controller looks at the hosts.
const recoveryRound = 200 * time.Millisecond

// nextRound waits for the next round: recoveryRound, or less when a host
// was just fenced, so that its recovery starts as soon as fencing confirms.
func (c *Controller) nextRound(ctx context.Context) {
	t := time.NewTimer(recoveryRound)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-c.fenced:
	}
}

// wakeRound starts the next round now (or right after the one running).
func (c *Controller) wakeRound() {
	select {
	case c.fenced <- struct{}{}:
	default:
	}
}
