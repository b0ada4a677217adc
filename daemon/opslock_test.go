package daemon

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/controller"
)

// slowStarts holds every StartItem at the raft write until released, as a
// slow disk or a lagging follower would.
type slowStarts struct {
	next    controller.Applier
	held    chan struct{}
	release chan struct{}
	once    sync.Once
}

func (a *slowStarts) Apply(ctx context.Context, cmd cluster.Command) (uint64, error) {
	if _, ok := cmd.(*cluster.StartItem); ok {
		a.once.Do(func() { close(a.held) })
		select {
		case <-a.release:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return a.next.Apply(ctx, cmd)
}

// TestOpsControllerNeverHoldsItsLockAcrossACommit: while a step's start
// waits for its raft write, what reads the controller (the in-flight count
// /metrics shows, a maintenance precheck) answers at once, and the
// evacuation completes once the writes go through.
func TestOpsControllerNeverHoldsItsLockAcrossACommit(t *testing.T) {
	slow := &slowStarts{held: make(chan struct{}), release: make(chan struct{})}
	opts := testOptions(t)
	opts.WrapOpsRaft = func(next controller.Applier) controller.Applier {
		slow.next = next
		return slow
	}
	dev := startTestDevHook(t, DevOptions{Hosts: 3, VMs: 6}, opts, nil)
	c, err := api.NewClient(dev.APIAddr(), "")
	if err != nil {
		t.Fatal(err)
	}
	waitInventory(t, c, 3, 6)
	ctx := context.Background()
	host := busiestHost(t, c).Name
	ref, err := c.Maintenance(ctx, host, api.MaintenanceRequest{Status: "enable", Migrate: "all"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-slow.held:
	case <-time.After(20 * time.Second):
		t.Fatal("no step started")
	}
	released := false
	defer func() {
		if !released {
			close(slow.release)
		}
	}()
	done := make(chan error, 1)
	go func() {
		dev.ops.InFlight()
		var other string
		for _, h := range dev.Sim.HostNames() {
			if h != host {
				other = h
				break
			}
		}
		_, err := c.Precheck(ctx, other, api.MaintenanceRequest{Status: "enable", Migrate: "all"})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("precheck: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the in-flight count and a precheck waited for a step's raft write")
	}
	close(slow.release)
	released = true
	if op := waitOp(t, c, ref.Operation, 60*time.Second); op.State != api.OpSucceeded {
		t.Fatalf("evacuation ended %s: %+v", op.State, op)
	}
}
