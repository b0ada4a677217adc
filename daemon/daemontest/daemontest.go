// Package daemontest starts Herd servers for other packages' tests. Only
// tests import it.
package daemontest

import (
	"context"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon"
	"github.com/herd-project/herd/internal/testutil"
)

// StartDev starts a dev server on loopback ports with short raft
// timeouts, logging to t, and shuts it down when the test ends.
func StartDev(t testing.TB, o daemon.DevOptions) *daemon.DevServer {
	t.Helper()
	if o.APIListen == "" {
		o.APIListen = "127.0.0.1:0"
	}
	if o.RaftListen == "" {
		o.RaftListen = "127.0.0.1:0"
	}
	dev, err := daemon.NewDevServer(o, daemon.Options{Logger: testutil.Logger(t), RaftHeartbeat: 200 * time.Millisecond,
		RaftElection: 200 * time.Millisecond, RaftLease: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		dev.Shutdown(ctx)
	})
	return dev
}
