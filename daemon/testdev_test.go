package daemon

import (
	"cmp"
	"context"
	"testing"
	"time"
)

// StartTestDev is daemontest.StartDev for this package's own tests, which
// cannot import it: a dev server on loopback ports with short raft
// timeouts, logging to t, shut down when the test ends.
func StartTestDev(t testing.TB, o DevOptions) *DevServer {
	t.Helper()
	return startTestDevOpts(t, o, testOptions(t))
}

// startTestDevOpts is StartTestDev with the server options given.
func startTestDevOpts(t testing.TB, o DevOptions, opts Options) *DevServer {
	t.Helper()
	return startTestDevHook(t, o, opts, nil)
}

// startTestDevHook is startTestDevOpts with a change to the server made
// before it starts (nil: none).
func startTestDevHook(t testing.TB, o DevOptions, opts Options, before func(*DevServer)) *DevServer {
	t.Helper()
	o.APIListen, o.RaftListen = cmp.Or(o.APIListen, "127.0.0.1:0"), cmp.Or(o.RaftListen, "127.0.0.1:0")
	dev, err := NewDevServer(o, opts)
	if err == nil && before != nil {
		before(dev)
	}
	if err == nil {
		err = dev.Start()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		dev.Shutdown(ctx)
	})
	return dev
}
