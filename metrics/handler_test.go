package metrics

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func testHosts() []HostSample {
	return []HostSample{
		{Name: "a-1", Driver: "libvirt", Admin: "AVAILABLE", Maintenance: "off", Health: "alive", Connected: true,
			MemoryBytes: 1 << 40, MemoryUsedBytes: 3<<30 + 7, CPUs: 64, VCPUsUsed: 80, VMs: 20, RunningVMs: 19},
		{Name: `b"quoted\back`, Driver: "vsphere", Admin: "MAINTENANCE", Maintenance: "on", Health: "dead",
			FencingFailed: true, StaleCopies: 2, LeaseArmed: true},
		{Name: "c\nnewline", Driver: "dev", Admin: "OFFLINE", Maintenance: "error", Health: "fenced", MemoryBytes: 123456789012345},
	}
}

// sortedWithinFamilies sorts the sample lines of each family of a text
// exposition: the library orders a family's series by its label values in
// label-name order, the handler by host (Prometheus takes any order).
func sortedWithinFamilies(text string) string {
	var out, samples []string
	flush := func() {
		sort.Strings(samples)
		out, samples = append(out, samples...), nil
	}
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "#") {
			flush()
			out = append(out, l)
		} else {
			samples = append(samples, l)
		}
	}
	flush()
	return strings.Join(out, "\n")
}

// The host families written directly are what the client library writes
// for the same series, line for line, up to the order of a family's series.
func TestHostFamiliesAsLibraryWritesThem(t *testing.T) {
	for _, hosts := range [][]HostSample{nil, testHosts()[:1], testHosts()} {
		var got bytes.Buffer
		appendHostFamilies(&got, hosts)

		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
			for i, f := range hostFamilies {
				for j := range hosts {
					lv, v := f.value(&hosts[j])
					labels := []string{hosts[j].Name}
					if f.label != "" {
						labels = append(labels, lv)
					}
					ch <- gauge(hostDescs[i], v, labels...)
				}
			}
		}))
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]*dto.MetricFamily{}
		for _, mf := range families {
			byName[mf.GetName()] = mf
		}
		var want bytes.Buffer
		for _, f := range hostFamilies { // in the order the handler writes them
			if mf := byName[f.name]; mf != nil {
				if _, err := expfmt.MetricFamilyToText(&want, mf); err != nil {
					t.Fatal(err)
				}
			}
		}
		if g, w := sortedWithinFamilies(got.String()), sortedWithinFamilies(want.String()); g != w {
			t.Errorf("%d hosts: written\n%s\nlibrary\n%s", len(hosts), g, w)
		}
	}
}

// A host name that is not UTF-8 still gives a scrape a parser takes.
func TestHostFamiliesInvalidUTF8(t *testing.T) {
	var b bytes.Buffer
	appendHostFamilies(&b, []HostSample{{Name: "bad\xffname", Admin: "AVAILABLE"}})
	parser := expfmt.NewTextParser(model.LegacyValidation)
	if _, err := parser.TextToMetricFamilies(&b); err != nil {
		t.Fatalf("parse: %v", err)
	}
}

// The handler answers one exposition, gzipped when asked, with every state
// family of one sample and the collectors of the registry.
func TestHandler(t *testing.T) {
	sample := StateSample{Hosts: testHosts(), VMsByPower: map[string]int{"running": 19}, Events: 4,
		EvacuationRemaining: map[string]int{"a-1": 3}, Operations: map[[2]string]int{{"evacuate", "running"}: 1},
		FailoverCapacity: 2, FailoverMin: 1, RecoveryVMs: map[string]int{"pending": 5}}
	reg := prometheus.NewRegistry()
	m := New(reg, Sources{State: func() StateSample { return sample }, Raft: func() RaftSample { return RaftSample{IsLeader: true, State: "Leader"} }})
	m.BalanceMoves.Add(3)
	srv := httptest.NewServer(m.Handler(reg))
	defer srv.Close()

	for _, enc := range []string{"", "gzip", "gzip;q=0", "br, gzip;q=0.5"} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if enc != "" {
			req.Header.Set("Accept-Encoding", enc)
		}
		// Without DisableCompression the transport would ask for gzip and
		// undo it unseen.
		resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		body := io.Reader(resp.Body)
		wantGzip := enc == "gzip" || enc == "br, gzip;q=0.5"
		if got := resp.Header.Get("Content-Encoding") == "gzip"; got != wantGzip {
			t.Fatalf("Accept-Encoding %q: gzipped %v, want %v", enc, got, wantGzip)
		}
		if wantGzip {
			if body, err = gzip.NewReader(resp.Body); err != nil {
				t.Fatal(err)
			}
		}
		text, err := io.ReadAll(body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d %v", resp.StatusCode, err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != string(expfmt.NewFormat(expfmt.TypeTextPlain)) {
			t.Errorf("Content-Type %q", ct)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(bytes.NewReader(text))
		if err != nil {
			t.Fatalf("parse: %v\n%s", err, text)
		}
		for name, want := range map[string]float64{
			"herd_hosts": 3, "herd_cluster_failover_capacity_hosts": 2, "herd_evacuation_vms_remaining": 3,
			"herd_agent_leases": 1, "herd_raft_leader": 1, "herd_balance_moves_total": 3,
			"herd_host_memory_used_bytes": 3<<30 + 7, "herd_host_fencing_failed": 0,
		} {
			mf := families[name]
			if mf == nil {
				t.Errorf("no %s in\n%s", name, text)
				continue
			}
			m := mf.Metric[0]
			got := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			if got != want {
				t.Errorf("%s = %v, want %v", name, got, want)
			}
		}
		if n := strings.Count(string(text), "\nherd_host_health{"); n != 3 {
			t.Errorf("%d herd_host_health series, want one per host", n)
		}
		if _, ok := families["go_goroutines"]; !ok {
			t.Error("no go_goroutines: the registry's collectors are missing")
		}
	}
}
