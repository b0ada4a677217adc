package handlers

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/controller/controllertest"
	"github.com/herd-project/herd/daemon/httpapi"
	"github.com/herd-project/herd/metrics"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/policytest"
)

// fakeState is the replicated state as the handlers read it, over a
// one-server fake raft.
type fakeState struct{ *controllertest.Raft }

func (f fakeState) ReadWithUsage(fn func(st *cluster.State, u *cluster.Usage)) {
	f.Read(func(st *cluster.State) { fn(st, &cluster.Usage{Hosts: st.Usage()}) })
}

func (f fakeState) Operation(id string) *cluster.Operation {
	var op *cluster.Operation
	f.Read(func(st *cluster.State) { op = st.Operations[id] })
	return op
}

// fakeLeases records the renewals the handlers tell the lease table of.
type fakeLeases struct{ renewed []string }

func (l *fakeLeases) Renew(host string, _ time.Time) { l.renewed = append(l.renewed, host) }
func (l *fakeLeases) Forget(string)                  {}
func (l *fakeLeases) Beat(string, time.Time)         {}
func (l *fakeLeases) AgentStart(string, time.Time)   {}

// TestLeaseRenewal drives the lease handler through its dependencies
// alone: a refusal answers with its status and field, writes nothing,
// renews nothing and is counted; a renewal arms the lease in the state
// with the longest TTL and is counted.
func TestLeaseRenewal(t *testing.T) {
	tests := []struct {
		name    string
		host    string
		body    string
		leader  error
		code    int
		field   string
		armed   time.Duration
		renewed bool
		// counted: herd_lease_renewals_total{result="refused"} and {"ok"}
		refused, ok float64
	}{
		{"no agent name", "h01", `{"ttl":10000000000}`, nil, http.StatusBadRequest, "agent", 0, false, 1, 0},
		{"unknown host", "h09", `{"agent":"a","ttl":10000000000}`, nil, http.StatusNotFound, "host", 0, false, 1, 0},
		{"leadership unconfirmed", "h01", `{"agent":"a","ttl":10000000000}`, errors.New("no quorum"), http.StatusServiceUnavailable, "", 0, false, 1, 0},
		{"ttl out of range", "h01", `{"agent":"a","ttl":660000000000}`, nil, http.StatusBadRequest, "ttl", 0, false, 0, 0},
		{"asking only", "h01", `{"agent":"a"}`, nil, http.StatusOK, "", 0, false, 0, 0},
		{"renewal", "h01", `{"agent":"a","ttl":30000000000}`, nil, http.StatusOK, "", 30 * time.Second, true, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := policy.Parse("test", []byte("apiVersion: herd/v1\nkind: Policy\n"))
			if err != nil {
				t.Fatal(err)
			}
			f := fakeState{controllertest.NewRaft(policytest.NewCluster(2, 64))}
			leases := &fakeLeases{}
			m := metrics.New(prometheus.NewRegistry(), metrics.Sources{})
			a := New(Deps{State: f, Raft: f, Leases: leases, Metrics: m, NodeName: "s1",
				Policy: func() *policy.Document { return doc }, VerifyLeader: func() error { return tt.leader }})
			r := httptest.NewRequest(http.MethodPut, "/v1/hosts/"+tt.host+"/lease", strings.NewReader(tt.body))
			r.SetPathValue("host", tt.host)
			_, err = a.LeaseRenew(httptest.NewRecorder(), r)

			code := http.StatusOK
			var he *httpapi.Error
			if errors.As(err, &he) {
				code = he.Code
			} else if err != nil {
				t.Fatalf("err = %v, want an *httpapi.Error or none", err)
			}
			if code != tt.code || he != nil && he.Field != tt.field {
				t.Fatalf("answer %d %+v, want %d field %q", code, he, tt.code, tt.field)
			}
			if got := f.St.Hosts["h01"].LeaseTTL; got != tt.armed {
				t.Errorf("lease TTL in the state = %s, want %s", got, tt.armed)
			}
			if tt.armed == 0 && f.Applied() != 0 {
				t.Errorf("wrote %d commands, want none", f.Applied())
			}
			if renewed := len(leases.renewed) == 1 && leases.renewed[0] == "h01"; renewed != tt.renewed || len(leases.renewed) > 1 {
				t.Errorf("lease table renewals %v, want a renewal of h01: %v", leases.renewed, tt.renewed)
			}
			refused, ok := count(t, m.LeaseRenewals, "refused"), count(t, m.LeaseRenewals, "ok")
			if refused != tt.refused || ok != tt.ok {
				t.Errorf("counted %v refused, %v ok; want %v, %v", refused, ok, tt.refused, tt.ok)
			}
		})
	}
}

// count is the value of c's counter with label value v.
func count(t *testing.T, c *prometheus.CounterVec, v string) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.WithLabelValues(v).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
