package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/clustertest"
	"github.com/herd-project/herd/cluster/raftnode"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/internal/testutil"
)

// BenchmarkMetricsScrape scrapes /metrics of a server holding 2,000 hosts
// and 40,000 VMs, and reports the size and the series per host: the label
// cardinality must grow with hosts, never with VMs.
func BenchmarkMetricsScrape(b *testing.B) {
	s := startBenchServer(b, "scrape")
	series := func(hosts, vms int) (int, int) {
		replaceInventory(b, s, clustertest.LargeState(hosts, vms))
		body := scrape(b, s.APIAddr())
		n := 0
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, "herd_host_") {
				n++
			}
		}
		return n, len(body)
	}
	// Same hosts, ten times the VMs: the host series must not change.
	small, _ := series(2000, 4000)
	large, size := series(2000, 40000)
	if small != large {
		b.Fatalf("host series grew with VMs: %d → %d", small, large)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		scrape(b, s.APIAddr())
	}
	b.ReportMetric(float64(size)/(1<<20), "MiB/scrape")
	b.ReportMetric(float64(large)/2000, "host-series/host")
}

func scrape(b *testing.B, base string) string {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	return string(data)
}

// startBenchServer starts a dev server that leads alone; it is shut down
// when the benchmark ends.
func startBenchServer(b *testing.B, name string) *Server {
	cfg := config.DefaultServer()
	cfg.NodeName, cfg.DataDir = name, b.TempDir()
	cfg.API.Listen, cfg.Raft.Listen, cfg.Raft.BootstrapExpect = "127.0.0.1:0", "127.0.0.1:0", 1
	cfg.Dev = true
	cfg.PolicyFile = filepath.Join(cfg.DataDir, "policy.yaml")
	if err := writeDevPolicy(cfg.PolicyFile, nil); err != nil {
		b.Fatal(err)
	}
	s, err := NewServer(cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Shutdown(context.Background()) })
	testutil.WaitFor(b, 10*time.Second, "leader", s.Node().IsLeader)
	return s
}

// replaceInventory removes every host and VM and writes st's instead, as
// a first inventory would.
func replaceInventory(b *testing.B, s *Server, st *cluster.State) {
	wipe := &cluster.InventoryDiff{Driver: "dc", RemoveHosts: s.Node().FSM().State().HostNames()}
	for id := range s.Node().FSM().State().VMs {
		wipe.RemoveVMs = append(wipe.RemoveVMs, id)
	}
	if _, err := s.Node().Apply(context.Background(), wipe); err != nil {
		b.Fatal(err)
	}
	d := &cluster.InventoryDiff{Driver: "dc"}
	for _, n := range st.HostNames() {
		d.UpsertHosts = append(d.UpsertHosts, *st.Hosts[n])
	}
	for _, vm := range st.SortedVMs() {
		d.UpsertVMs = append(d.UpsertVMs, *vm)
	}
	for _, part := range raftnode.SplitInventory(d, raftnode.MaxInventoryEntryBytes) {
		if _, err := s.Node().Apply(context.Background(), part); err != nil {
			b.Fatal(err)
		}
	}
}
