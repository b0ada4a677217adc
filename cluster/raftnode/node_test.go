package raftnode

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/internal/testutil"
)

func TestLeaderLossKeepsCommittedWrites(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	nodes := StartTestCluster(t, dirs)
	defer func() {
		for _, n := range nodes {
			if n != nil {
				n.Shutdown()
			}
		}
	}()
	leader := WaitLeader(t, 5*time.Second, nodes...)

	ctx := context.Background()
	var written []string
	for i := 0; i < 50; i++ {
		name := fmt.Sprintf("host-%02d", i)
		if _, err := leader.Apply(ctx, hostDiff("dc", name)); err != nil {
			t.Fatalf("apply %s: %v", name, err)
		}
		written = append(written, name)
	}

	// Kill the leader; a new one must be elected among the survivors.
	var survivors []*Node
	killed := -1
	for i, n := range nodes {
		if n == leader {
			killed = i
			continue
		}
		survivors = append(survivors, n)
	}
	start := time.Now()
	if err := leader.Shutdown(); err != nil {
		t.Fatalf("shutdown leader: %v", err)
	}
	nodes[killed] = nil
	newLeader := WaitLeader(t, 5*time.Second, survivors...)
	t.Logf("new leader %s after %s", newLeader.ID(), time.Since(start))
	if newLeader == leader {
		t.Fatal("old leader still leads")
	}
	// Writes continue on the new leader.
	if _, err := newLeader.Apply(ctx, hostDiff("dc", "host-after")); err != nil {
		t.Fatalf("apply after failover: %v", err)
	}
	written = append(written, "host-after")
	for _, n := range survivors {
		n := n
		testutil.WaitFor(t, 5*time.Second, "survivor "+n.ID()+" has every write", func() bool {
			var ok bool
			n.FSM().Read(func(s *cluster.State) {
				ok = len(s.Hosts) == len(written)
				for _, name := range written {
					ok = ok && s.Hosts[name] != nil
				}
			})
			return ok
		})
	}

	// The killed node restarts from its data dir, recovers its state and
	// catches up with what was written while it was down.
	cfg := NodeConfigForTest(t, fmt.Sprintf("s%d", killed+1), dirs[killed])
	cfg.Bind = leader.Addr() // same address as before: it is in the configuration
	restarted, err := Open(cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	nodes[killed] = restarted
	has, err := restarted.HasState()
	if err != nil || !has {
		t.Fatalf("restarted node has no state: %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "restarted node catches up", func() bool {
		var n int
		restarted.FSM().Read(func(s *cluster.State) { n = len(s.Hosts) })
		return n == len(written)
	})
}

func TestApplyOnFollowerIsRefused(t *testing.T) {
	nodes := StartTestCluster(t, []string{t.TempDir(), t.TempDir(), t.TempDir()})
	defer func() {
		for _, n := range nodes {
			n.Shutdown()
		}
	}()
	leader := WaitLeader(t, 5*time.Second, nodes...)
	for _, n := range nodes {
		if n == leader {
			continue
		}
		if _, err := n.Apply(context.Background(), hostDiff("dc", "x")); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("apply on follower: got %v, want ErrNotLeader", err)
		}
	}
}

func TestSingleNodeRestartRecoversFromSnapshotAndLog(t *testing.T) {
	dir := t.TempDir()
	cfg := NodeConfigForTest(t, "s1", dir)
	n, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Bootstrap(map[string]string{"s1": n.Addr()}); err != nil {
		t.Fatal(err)
	}
	WaitLeader(t, 5*time.Second, n)
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if _, err := n.Apply(ctx, hostDiff("dc", fmt.Sprintf("h%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Snapshot(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// Entries after the snapshot live only in the log.
	if _, err := n.Apply(ctx, &cluster.SetHostStatus{Host: "h3", Status: cluster.NotAccepting, Reason: "disk", Event: cluster.NewEvent("host.status", "test", "h3", "", "closed")}); err != nil {
		t.Fatal(err)
	}
	before := n.FSM().State()
	n.Shutdown()

	n2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Shutdown()
	if err := n2.Bootstrap(map[string]string{"s1": n2.Addr()}); err != nil {
		t.Fatal(err)
	}
	WaitLeader(t, 5*time.Second, n2)
	if err := n2.Barrier(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	after := n2.FSM().State()
	if len(after.Hosts) != 10 || after.Hosts["h3"].Admin != cluster.NotAccepting || after.Hosts["h3"].AdminReason != "disk" {
		t.Fatalf("state after restart: %d hosts, h3=%+v", len(after.Hosts), after.Hosts["h3"])
	}
	if !reflect.DeepEqual(before.Events, after.Events) {
		t.Fatalf("events differ after restart:\n%v\n%v", before.Events, after.Events)
	}
}
