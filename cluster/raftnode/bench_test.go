package raftnode

import (
	"context"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
)

// BenchmarkApply3Nodes measures committing state commands on a three-node
// loopback cluster: one writer (latency) and 32 concurrent writers
// (throughput, raft batches them).
func BenchmarkApply3Nodes(b *testing.B) {
	nodes := StartTestCluster(b, []string{b.TempDir(), b.TempDir(), b.TempDir()})
	defer func() {
		for _, n := range nodes {
			n.Shutdown()
		}
	}()
	leader := WaitLeader(b, 5*time.Second, nodes...)
	ctx := context.Background()
	if _, err := leader.Apply(ctx, hostDiff("dc", "h")); err != nil {
		b.Fatal(err)
	}
	cmd := func(i int) cluster.Command {
		return &cluster.SetHostStatus{Host: "h", Status: cluster.NotAccepting, Reason: strconv.Itoa(i), Event: cluster.NewEvent("host.status", "bench", "h", "", "x")}
	}

	b.Run("sequential", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			start := time.Now()
			if _, err := leader.Apply(ctx, cmd(i)); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		reportLatency(b, lat)
	})
	b.Run("concurrent32", func(b *testing.B) {
		var wg sync.WaitGroup
		per := b.N/32 + 1
		start := time.Now()
		for w := 0; w < 32; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < per; i++ {
					if _, err := leader.Apply(ctx, cmd(i)); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(per*32)/time.Since(start).Seconds(), "commits/s")
	})
}

func reportLatency(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
