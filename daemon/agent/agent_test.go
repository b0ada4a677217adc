package agent

import (
	"context"
	"testing"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
)

// TestEachServerStoppedIsAnError: an agent stopping while it renews asks
// no server, and must not take that for an answer (renew read the nil
// lease and crashed).
func TestEachServerStoppedIsAnError(t *testing.T) {
	a := &Agent{cfg: &config.Agent{Servers: []string{"http://127.0.0.1:7420"}}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	err := a.eachServer(ctx, func(*api.Client) error { called = true; return nil })
	if err == nil || called {
		t.Fatalf("eachServer on a stopped context: err %v, fn called %v", err, called)
	}
}
