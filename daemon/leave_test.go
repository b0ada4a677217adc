package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/drivers/vsphere"
	"github.com/herd-project/herd/internal/testutil"
)

func TestServersLeave(t *testing.T) {
	sim, err := vsphere.StartSimulator(vsphere.SimConfig{Hosts: 1, VMs: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	tc := newTestCluster(t, 3, sim)
	leader := tc.leader()
	follower := (leader + 1) % 3
	ctx := context.Background()
	testutil.WaitFor(t, 15*time.Second, "three registered servers", func() bool {
		cl, err := tc.client(follower).Cluster(ctx)
		return err == nil && len(cl.Servers) == 3 && cl.LeaderAPI != ""
	})

	// A follower leaves through the leader, then says it should stop.
	res, err := tc.client(follower).Leave(ctx)
	if err != nil || res.Left != tc.cfgs[follower].NodeName {
		t.Fatalf("follower leave: %+v %v", res, err)
	}
	select {
	case <-tc.servers[follower].Left():
	default:
		t.Fatal("the server that left was not told to stop")
	}
	members, _ := tc.servers[leader].Node().Members()
	if len(members) != 2 {
		t.Fatalf("members after a follower left: %+v", members)
	}
	tc.stop(follower)

	// The leader leaves: the last server takes over alone.
	if _, err := tc.client(leader).Leave(ctx); err != nil {
		t.Fatalf("leader leave: %v", err)
	}
	last := 3 - leader - follower
	testutil.WaitFor(t, 15*time.Second, "the last server leads", func() bool { return tc.servers[last].Node().IsLeader() })
	tc.stop(leader)
	c := tc.client(last)
	var se *api.StatusError
	if _, err := c.Leave(ctx); !errors.As(err, &se) || se.Code != 409 || se.Body.Field != "id" {
		t.Fatalf("the only server leaving: %v", err)
	}
	ev, _ := c.Events(ctx, api.EventQuery{})
	n := 0
	for _, e := range ev.Events {
		if e.Type == "cluster.server_left" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d cluster.server_left events, want 2", n)
	}
	if err := c.RemoveServer(ctx, "no-such-server"); !errors.As(err, &se) || se.Code != 404 {
		t.Fatalf("remove unknown server: %v", err)
	}
}

// TestShutdownKeepsAnsweredWrites: a server shut down while writes are in
// flight keeps every write it answered 2xx.
func TestShutdownKeepsAnsweredWrites(t *testing.T) {
	dir := t.TempDir()
	o := DevOptions{Hosts: 1, VMs: 1, APIListen: "127.0.0.1:0", RaftListen: "127.0.0.1:0", DataDir: dir,
		Configure: func(c *config.Server) { c.API.WriteRate = 0 }}
	dev, err := NewDevServer(o, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	c := client(t, dev.APIAddr(), "")
	waitInventory(t, c, 1, 1)
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				msg := fmt.Sprintf("w%d-%d", w, i)
				if c.AppendEvent(context.Background(), api.EventRequest{Type: "note", Message: msg}) == nil {
					mu.Lock()
					acked[msg] = true
					mu.Unlock()
				}
			}
		}(w)
	}
	time.Sleep(300 * time.Millisecond)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := dev.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	cancel()
	close(stop)
	wg.Wait()
	if len(acked) < 10 {
		t.Fatalf("only %d writes answered before shutdown", len(acked))
	}

	again, err := NewDevServer(o, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		again.Shutdown(ctx)
	}()
	if err := again.Start(); err != nil {
		t.Fatal(err)
	}
	// Leading again, the server has applied its whole log once a write of
	// its own is in the state.
	testutil.WaitFor(t, 15*time.Second, "the restarted server leads", func() bool { return again.Node().IsLeader() })
	if err := again.Node().Barrier(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range again.Node().FSM().State().Events {
		if e.Type == "note" {
			got[e.Message] = true
		}
	}
	for msg := range acked {
		if !got[msg] {
			t.Errorf("write %s was answered 2xx but is lost after shutdown", msg)
		}
	}
	t.Logf("%d writes answered before shutdown, all kept", len(acked))
}
