// Package ctxsleep waits for a duration or a context, whichever ends first.
package ctxsleep

import (
	"context"
	"time"
)

// Sleep returns after d, or as soon as ctx ends.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
