package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/agent"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

// lossyRoundTripper fails every request while its host's network is out.
type lossyRoundTripper struct {
	out  func() bool
	next http.RoundTripper
}

func (l lossyRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	if l.out() {
		return nil, errors.New("network unreachable (injected loss)")
	}
	return l.next.RoundTrip(r)
}

// BenchmarkGossipLossFalseRecoveries runs 50 agents on loopback, one per
// simulated host, for a minute in which hosts lose their whole network —
// gossip, the agent's API calls, and the manager's view of the host — for
// 0.5 to 3 s at random (about one loss per host every 10 s). Losses
// shorter than the thresholds must cause no fencing, no recovery and no
// self-fencing; the figures say how many losses were seen (suspect).
//
// The thresholds are the policy's defaults (health and lease TTL), which
// this benchmark is there to choose; HERD_LOSS_RUN sets how long the
// losses go on (a Go duration, default 1m; the defaults were chosen from
// runs of at least 4m).
func BenchmarkGossipLossFalseRecoveries(b *testing.B) {
	const hosts = 50
	run := time.Minute
	if v := os.Getenv("HERD_LOSS_RUN"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("HERD_LOSS_RUN=%q: want a positive duration such as 4m", v)
		}
		run = d
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dev := StartTestDev(b, DevOptions{Hosts: hosts, VMs: hosts, Policy: func(p *policy.Document) {
			d := policy.Default()
			p.Health, p.Recovery.LeaseTTL = d.Health, d.Recovery.LeaseTTL
		}})
		c, err := api.NewClient(dev.APIAddr(), "")
		if err != nil {
			b.Fatal(err)
		}
		waitInventory(b, c, hosts, hosts)
		names := dev.Sim.HostNames()
		// A host's next loss comes at least 5s after its last one ended:
		// short losses, not one long one.
		lossUntil := make([]atomic.Int64, hosts)
		agents := make([]*testAgent, hosts)
		for h := range names {
			out := func() bool { return time.Now().UnixNano() < lossUntil[h].Load() }
			agents[h] = startAgentWith(b, dev, names[h], filepath.Join(b.TempDir(), "lease.json"), func(o *agent.Options) {
				o.GossipFast, o.GossipDrop = false, out
				o.Transport = lossyRoundTripper{out: out, next: http.DefaultTransport}
			})
		}
		testutil.WaitFor(b, 60*time.Second, "every lease armed", func() bool {
			hs, _ := c.Hosts(context.Background())
			n := 0
			for _, h := range hs {
				if h.LeaseTTL > 0 {
					n++
				}
			}
			return n == hosts
		})
		since := time.Now()
		b.StartTimer()
		var losses atomic.Int64
		var wg sync.WaitGroup
		for end := time.Now().Add(run); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			h := rand.IntN(hosts)
			if time.Now().UnixNano() < lossUntil[h].Load()+int64(5*time.Second) {
				continue
			}
			d := 500*time.Millisecond + time.Duration(rand.Int64N(int64(2500*time.Millisecond)))
			lossUntil[h].Store(time.Now().Add(d).UnixNano())
			losses.Add(1)
			_ = dev.Sim.SetHostConnection(names[h], drivers.NotResponding)
			wg.Add(1)
			time.AfterFunc(d, func() {
				defer wg.Done()
				_ = dev.Sim.SetHostConnection(names[h], drivers.Connected)
			})
		}
		wg.Wait()
		b.StopTimer()
		// Anything pending would show by now.
		time.Sleep(policy.DefaultDeadAfter + policy.Default().Recovery.LeaseTTL)
		var suspect, dead, fenced, recoveries int
		for _, e := range queryEvents(b, c, api.EventQuery{Since: since}) {
			switch {
			case e.Type == "host.health" && strings.Contains(e.Message, " is suspect "):
				suspect++
			case e.Type == "host.health" && strings.Contains(e.Message, " is dead "):
				dead++
			case e.Type == "host.fenced" || e.Type == "host.fencing_failed":
				fenced++
			case e.Type == "recovery.started":
				recoveries++
			}
		}
		selfFenced := 0
		for _, a := range agents {
			selfFenced += a.Status().StoppedVMs
		}
		fmt.Fprintf(b.Output(), "%d losses, %d suspect verdicts (%.1f a minute), %d dead, %d fencings, %d recoveries, %d self-fenced VMs over %s\n",
			losses.Load(), suspect, float64(suspect)/run.Minutes(), dead, fenced, recoveries, selfFenced, run)
		b.ReportMetric(float64(losses.Load()), "losses")
		b.ReportMetric(float64(suspect), "suspect")
		b.ReportMetric(float64(suspect)/run.Minutes(), "suspect/min")
		b.ReportMetric(float64(dead), "dead")
		b.ReportMetric(float64(fenced), "fenced")
		b.ReportMetric(float64(recoveries), "false-recoveries")
		b.ReportMetric(float64(selfFenced), "self-fenced-VMs")
		if dead+fenced+recoveries+selfFenced > 0 {
			b.Errorf("short losses caused %d dead, %d fencings, %d recoveries, %d self-fenced VMs", dead, fenced, recoveries, selfFenced)
		}

	}
}
