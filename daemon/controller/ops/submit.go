package ops

import (
	"context"

	"github.com/herd-project/herd/cluster"
)

// submitter hands a command to raft without waiting for its commit (the
// server's node): commands submitted in turn are committed in that order.
type submitter interface {
	Submit(ctx context.Context, cmd cluster.Command) (wait func() (uint64, error))
}

// startAside is startLocked's action for a recreation: its start is handed
// to raft in decision order (highest priority first), and waiting for the
// commit and the driver call happen in the background, so that the
// recreations of a recovery (up to recovery.concurrency, across the target
// hosts) start side by side instead of one raft commit after another. The
// step is in flight and its target reserved from the decision on, so the
// next decision neither repeats nor forgets it; a start that is not
// recorded (not committed, or refused) gives both back and acts on nothing.
func (c *Controller) startAside(sub submitter, op *cluster.Operation, it cluster.OpItem, vm *cluster.VM, start *cluster.StartItem) action {
	return func(ctx context.Context) bool {
		wait := sub.Submit(ctx, start)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if _, err := wait(); err != nil {
				c.applied(err) // logs it
				c.release(op, it, vm)
				return
			}
			c.run(ctx, op, it, vm)
		}()
		return true
	}
}
