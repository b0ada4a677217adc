package daemon

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

// BenchmarkCrashRecovery measures, in dev mode, a host with 100 VMs
// crashing until the last of them runs elsewhere: detection (crash to the
// host dead), fencing, and recovery (crash to the last VM running).
// With the simulator's power switch, a fence that answers at once; with
// lease fencing, through a real agent whose host is cut off.
func BenchmarkCrashRecovery(b *testing.B) {
	for _, concurrency := range []int{8, 32} {
		b.Run(fmt.Sprintf("power/concurrency=%d", concurrency), func(b *testing.B) {
			benchCrash(b, concurrency, false)
		})
	}
	b.Run("lease/concurrency=8", func(b *testing.B) { benchCrash(b, 8, true) })
}

func benchCrash(b *testing.B, concurrency int, lease bool) {
	var detect, fenced, recovered time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ttl := 10 * time.Second
		dev := StartTestDev(b, DevOptions{Hosts: 2, VMs: 200, HostMemoryGiB: 4096, Policy: func(p *policy.Document) {
			p.Health = policy.HealthPolicy{SuspectAfter: 500 * time.Millisecond, DeadAfter: time.Second, AliveAfter: time.Second}
			p.Recovery.Concurrency = concurrency
			if lease {
				p.Recovery.LeaseTTL = ttl
				p.Recovery.Fencing = []policy.FenceMethod{{Name: "lease", Type: policy.FenceLease}}
			}
		}})
		c, err := api.NewClient(dev.APIAddr(), "")
		if err != nil {
			b.Fatal(err)
		}
		waitInventory(b, c, 2, 200)
		victim := dev.Sim.HostNames()[0]
		var a *testAgent
		if lease {
			a = startAgent(b, dev, victim, filepath.Join(b.TempDir(), "lease.json"))
			testutil.WaitFor(b, 15*time.Second, "lease armed", func() bool {
				h, _ := c.Host(context.Background(), victim)
				return h != nil && h.LeaseTTL > 0
			})
		}
		if lease {
			// A crash comes at any point between two renewals.
			time.Sleep(time.Duration(rand.Int64N(int64(ttl / 3))))
		}
		b.StartTimer()
		start := time.Now()
		if lease {
			if err := dev.Sim.SetHostConnection(victim, drivers.NotResponding); err != nil {
				b.Fatal(err)
			}
			a.link.Cut()
			_ = a.Gossip().Shutdown()
		} else if err := c.DevHost(context.Background(), victim, true); err != nil {
			b.Fatal(err)
		}
		var op *api.Operation
		testutil.WaitFor(b, 60*time.Second, "recovery", func() bool {
			op = recoveryOf(b, c, victim)
			return op != nil && op.State.Terminal()
		})
		b.StopTimer()
		if op.State != api.OpSucceeded || len(op.Items) != 100 {
			b.Fatalf("recovery %s with %d VMs: %s", op.State, len(op.Items), op.Error)
		}
		h, _ := c.Host(context.Background(), victim)
		detect += h.DownSince.Sub(start)
		for _, e := range queryEvents(b, c, api.EventQuery{Host: victim}) {
			if e.Type == "host.fenced" {
				fenced += e.Time.Sub(start)
			}
		}
		recovered += op.Updated.Sub(start)
		if lease && !strings.Contains(h.FencedBy, "lease") {
			b.Fatalf("fenced by %q", h.FencedBy)
		}
	}
	n := float64(b.N)
	b.ReportMetric(detect.Seconds()/n, "detect-s")
	b.ReportMetric(fenced.Seconds()/n, "fenced-s")
	b.ReportMetric(recovered.Seconds()/n, "recovered-s")
}
