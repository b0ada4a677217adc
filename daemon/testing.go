package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
)

// StartTestDev starts a dev server on loopback ports with short raft
// timeouts, logging to t, and shuts it down when the test ends.
func StartTestDev(t testing.TB, o DevOptions) *DevServer {
	t.Helper()
	if o.APIListen == "" {
		o.APIListen = "127.0.0.1:0"
	}
	if o.RaftListen == "" {
		o.RaftListen = "127.0.0.1:0"
	}
	dev, err := NewDevServer(o, Options{Logger: cluster.TestLogger(t), RaftHeartbeat: 200 * time.Millisecond,
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
