package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster/clustertest"
)

// BenchmarkReadsDuringSlowEvacuation evacuates a host of 40 VMs while every
// raft log write takes the commit delay (a slow disk), and times the reads
// answered meanwhile: GET /v1/hosts, /metrics and a maintenance precheck,
// each read in a loop by its own client. A read must never wait on a
// commit: reads-over-commit counts those that took longer than one commit
// delay.
func BenchmarkReadsDuringSlowEvacuation(b *testing.B) {
	for _, delay := range []time.Duration{0, 100 * time.Millisecond} {
		b.Run(fmt.Sprintf("commit=%dms", delay.Milliseconds()), func(b *testing.B) {
			lat := map[string][]time.Duration{}
			var evac time.Duration
			for i := 0; i < b.N; i++ {
				d, l := readsDuringEvacuation(b, delay)
				evac += d
				for k, v := range l {
					lat[k] = append(lat[k], v...)
				}
			}
			b.ReportMetric(evac.Seconds()/float64(b.N), "evac-s")
			over := 0
			for name, l := range lat {
				sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
				ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
				b.ReportMetric(ms(l[len(l)/2]), name+"-p50-ms")
				b.ReportMetric(ms(l[len(l)*99/100]), name+"-p99-ms")
				b.ReportMetric(ms(l[len(l)-1]), name+"-max-ms")
				for _, d := range l {
					if delay > 0 && d > delay {
						over++
					}
				}
			}
			b.ReportMetric(float64(over), "reads-over-commit")
		})
	}
}

// readsDuringEvacuation runs one evacuation of 40 VMs against a raft whose
// log writes take delay, and returns how long it took and the time of each
// read answered while it ran, by kind.
func readsDuringEvacuation(b *testing.B, delay time.Duration) (time.Duration, map[string][]time.Duration) {
	b.StopTimer()
	const vms, others = 40, 400
	s := startInstantServer(b, newInstantDriver(20, vms, others), vms+others, 4, 8, clustertest.SlowLogs(delay))
	defer s.Shutdown(context.Background())
	base := s.APIAddr()
	reads := map[string]func() (*http.Response, error){
		"hosts":   func() (*http.Response, error) { return http.Get(base + "/v1/hosts") },
		"metrics": func() (*http.Response, error) { return http.Get(base + "/metrics") },
		"precheck": func() (*http.Response, error) {
			return http.Post(base+"/v1/hosts/h001/maintenance/precheck", "application/json", strings.NewReader(`{"migrate":"all"}`))
		},
	}
	var (
		mu   sync.Mutex
		lat  = map[string][]time.Duration{}
		wg   sync.WaitGroup
		stop = make(chan struct{})
		fail = make(chan error, len(reads))
	)
	for name, read := range reads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				start := time.Now()
				resp, err := read()
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("%s answered %d", name, resp.StatusCode)
					}
				}
				if err != nil {
					fail <- err
					return
				}
				mu.Lock()
				lat[name] = append(lat[name], time.Since(start))
				mu.Unlock()
			}
		}()
	}
	d := timeEvacuation(b, s)
	close(stop)
	wg.Wait()
	select {
	case err := <-fail:
		b.Fatal(err)
	default:
	}
	for name := range reads {
		if len(lat[name]) == 0 {
			b.Fatalf("no %s read answered during the evacuation", name)
		}
	}
	return d, lat
}
