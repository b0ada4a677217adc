package daemon

import (
	"context"
	"io"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/clustertest"
)

// BenchmarkLargeStateReads serves /metrics and GET /v1/hosts from a server
// holding 2,000 hosts and 40,000 VMs, with short and with realistic (about
// 6 KiB) definitions, each read after a new raft entry, and reports the
// median and worst answer time of each, and how many raft entries (other
// than the benchmark's) were applied per second meanwhile.
func BenchmarkLargeStateReads(b *testing.B) {
	for _, def := range []struct {
		name  string
		bytes int
	}{{"def=120B", clustertest.SmallDefinitionBytes}, {"def=6KiB", 6 << 10}} {
		b.Run(def.name, func(b *testing.B) { benchLargeStateReads(b, def.bytes) })
	}
}

func benchLargeStateReads(b *testing.B, defBytes int) {
	s := startBenchServer(b, "reads")
	replaceInventory(b, s, clustertest.LargeStateDef(2000, 40000, defBytes))
	get := func(path string) time.Duration {
		start := time.Now()
		resp, err := http.Get(s.APIAddr() + path)
		if err != nil {
			b.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		return time.Since(start)
	}
	get("/metrics")
	get("/v1/hosts")
	// The controllers first record what they make of 2,000 hosts no driver
	// answers for (health, one entry per host): measure once that settles.
	settled := s.Node().FSM().Index()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		idx := s.Node().FSM().Index()
		if idx == settled {
			break
		}
		settled = idx
	}
	start := time.Now()
	b.ResetTimer()
	var metrics, hosts []time.Duration
	for i := 0; i < b.N; i++ {
		for j := 0; j < 5; j++ {
			// An entry between reads, as a live cluster has: nothing
			// computed for the last state can be reused.
			note := &cluster.AppendEvents{Events: []cluster.Event{cluster.NewEvent("note", "bench", "host-00001", "", "x")}}
			if _, err := s.Node().Apply(context.Background(), note); err != nil {
				b.Fatal(err)
			}
			metrics = append(metrics, get("/metrics"))
			hosts = append(hosts, get("/v1/hosts"))
		}
	}
	report := func(lat []time.Duration, unit string) {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, unit+"-p50-ms")
		b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, unit+"-p99-ms")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, unit+"-max-ms")
	}
	b.ReportMetric(float64(s.Node().FSM().Index()-settled-uint64(len(metrics)))/time.Since(start).Seconds(), "entries/s")
	report(metrics, "metrics")
	report(hosts, "hosts")
}
