package raftnode

import (
	"fmt"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/internal/testutil"
)

// Helpers that form clusters in one process, for this package's tests and
// benchmarks (exported for its external test files).

// NodeConfigForTest is a node config with short timeouts for in-process clusters.
func NodeConfigForTest(t testing.TB, id, dir string) Config {
	return Config{
		ID:                 id,
		DataDir:            dir,
		Bind:               testutil.FreePort(t),
		HeartbeatTimeout:   200 * time.Millisecond,
		ElectionTimeout:    200 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond,
		Logger:             testutil.Logger(t),
	}
}

// WaitLeader waits until exactly one of nodes leads and returns it.
func WaitLeader(t testing.TB, timeout time.Duration, nodes ...*Node) *Node {
	t.Helper()
	var leader *Node
	testutil.WaitFor(t, timeout, "a leader", func() bool {
		leader = nil
		for _, n := range nodes {
			if n != nil && n.IsLeader() {
				if leader != nil {
					return false
				}
				leader = n
			}
		}
		return leader != nil
	})
	return leader
}

// StartTestCluster forms an n-node cluster in dirs (one per node) on loopback.
func StartTestCluster(t testing.TB, dirs []string) []*Node {
	t.Helper()
	nodes := make([]*Node, len(dirs))
	servers := map[string]string{}
	for i, dir := range dirs {
		n, err := Open(NodeConfigForTest(t, fmt.Sprintf("s%d", i+1), dir))
		if err != nil {
			t.Fatalf("open node %d: %v", i+1, err)
		}
		nodes[i] = n
		servers[n.ID()] = n.Addr()
	}
	for _, n := range nodes {
		if err := n.Bootstrap(servers); err != nil {
			t.Fatalf("bootstrap: %v", err)
		}
	}
	return nodes
}

// hostDiff is an inventory of hosts names for driver.
func hostDiff(driver string, names ...string) *cluster.InventoryDiff {
	d := &cluster.InventoryDiff{Driver: driver}
	for _, n := range names {
		d.UpsertHosts = append(d.UpsertHosts, cluster.Host{Name: n, MemoryBytes: 64 << 30, CPUs: 16, Connection: cluster.Connected})
	}
	return d
}
