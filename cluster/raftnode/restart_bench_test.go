package raftnode_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/clustertest"
	"github.com/herd-project/herd/cluster/raftnode"
	"github.com/herd-project/herd/internal/testutil"
)

// BenchmarkLargeStateRestart writes a raft snapshot of 2,000 hosts and
// 40,000 VMs, then starts a server process from that data dir and reports
// the snapshot size, the time until the restarted server leads with the
// whole state, and its resident memory. It runs with the short definition
// the benchmark always had and with realistic ones (libvirt domain XML and
// vSphere definitions with their devices, about 6 KiB each), and reports
// their mean size and the largest raft entry the first inventory wrote.
func BenchmarkLargeStateRestart(b *testing.B) {
	for _, def := range []struct {
		name  string
		bytes int
	}{{"def=120B", clustertest.SmallDefinitionBytes}, {"def=6KiB", 6 << 10}} {
		b.Run(def.name, func(b *testing.B) { benchLargeStateRestart(b, def.bytes) })
	}
}

func benchLargeStateRestart(b *testing.B, defBytes int) {
	dir := b.TempDir()
	n, err := raftnode.Open(raftnode.NodeConfigForTest(b, "s1", dir))
	if err != nil {
		b.Fatal(err)
	}
	if err := n.Bootstrap(map[string]string{"s1": n.Addr()}); err != nil {
		b.Fatal(err)
	}
	raftnode.WaitLeader(b, 5*time.Second, n)
	st := clustertest.LargeStateDef(2000, 40000, defBytes)
	var defTotal int
	for _, vm := range st.VMs {
		defTotal += vm.Definition.Len()
	}
	// Load it through raft as the inventory sync would, then snapshot.
	diff := &cluster.InventoryDiff{Driver: "dc"}
	for _, name := range st.HostNames() {
		diff.UpsertHosts = append(diff.UpsertHosts, *st.Hosts[name])
	}
	for _, vm := range st.SortedVMs() {
		diff.UpsertVMs = append(diff.UpsertVMs, *vm)
	}
	diff.Events = st.Events
	st = nil
	maxEntry, err := applyInventory(n, diff)
	if err != nil {
		b.Fatal(err)
	}
	diff = nil
	if err := n.Snapshot(); err != nil {
		b.Fatal(err)
	}
	addr := n.Addr()
	n.Shutdown()
	snaps, _ := filepath.Glob(filepath.Join(dir, "raft", "snapshots", "*", "state.bin"))
	var size int64
	for _, f := range snaps {
		if fi, err := os.Stat(f); err == nil {
			size = fi.Size()
		}
	}
	b.ResetTimer()
	var rss, ready float64
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRestartHelper$", "-test.v")
		cmd.Env = append(os.Environ(), "HERD_RESTART_DIR="+dir, "HERD_RESTART_ADDR="+addr)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("restart helper: %v\n%s", err, out)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "RESTARTED" {
				rss, _ = strconv.ParseFloat(f[1], 64)
				ready, _ = strconv.ParseFloat(f[2], 64)
				if f[3] != "40000" {
					b.Fatalf("restarted with %s VMs", f[3])
				}
			}
		}
	}
	b.ReportMetric(float64(defTotal)/40000/1024, "def-KiB")
	b.ReportMetric(float64(maxEntry)/(1<<20), "max-entry-MiB")
	b.ReportMetric(float64(size)/(1<<20), "snapshot-MiB")
	b.ReportMetric(rss, "rss-MiB")
	b.ReportMetric(ready, "restart-s")
}

// applyInventory commits a first inventory as the inventory sync does, in
// bounded parts, and returns the size of the largest raft entry it took.
func applyInventory(n *raftnode.Node, diff *cluster.InventoryDiff) (int, error) {
	largest := 0
	for _, part := range raftnode.SplitInventory(diff, raftnode.MaxInventoryEntryBytes) {
		b, err := cluster.Encode(part)
		if err != nil {
			return 0, err
		}
		largest = max(largest, len(b))
		if _, err := n.Apply(context.Background(), part); err != nil {
			return 0, err
		}
	}
	return largest, nil
}

// TestRestartHelper is the process BenchmarkLargeStateRestart starts: it
// opens the data dir, waits to lead with the state restored, and prints
// its RSS and how long that took.
func TestRestartHelper(t *testing.T) {
	dir := os.Getenv("HERD_RESTART_DIR")
	if dir == "" {
		t.Skip("run by BenchmarkLargeStateRestart")
	}
	start := time.Now()
	cfg := raftnode.NodeConfigForTest(t, "s1", dir)
	cfg.Bind = os.Getenv("HERD_RESTART_ADDR")
	cfg.Logger = testutil.Logger(t)
	n, err := raftnode.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	raftnode.WaitLeader(t, 30*time.Second, n)
	if err := n.Barrier(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	ready := time.Since(start)
	var vms int
	n.FSM().Read(func(s *cluster.State) { vms = len(s.VMs) })
	fmt.Printf("RESTARTED %.1f %.3f %d\n", rssMiB(), ready.Seconds(), vms)
}

func rssMiB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	data, _ := io.ReadAll(f)
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}
