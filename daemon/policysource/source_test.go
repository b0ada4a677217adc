package policysource

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/controller/controllertest"
	herdtest "github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/metrics"
)

// leader is a one-server raft that leads.
type leader struct{ *controllertest.Raft }

func (leader) IsLeader() bool            { return true }
func (leader) Leader() (id, addr string) { return "s1", "127.0.0.1:1" }
func (l leader) inForce() *cluster.Policy {
	var p *cluster.Policy
	l.Read(func(st *cluster.State) { p = st.Policy })
	return p
}

// TestReloadAppliesAValidFileAndRefusesABadOne: on the leader, a valid
// policy file is put in force and shows no drift; a file that does not
// validate is refused with its file:line, the policy in force stays,
// the failure is recorded as an event and counted, and the status says
// the reload failed.
func TestReloadAppliesAValidFileAndRefusesABadOne(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte("apiVersion: herd/v1\nkind: Policy\nmaintenance:\n  per_source: 4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	node := leader{controllertest.NewRaft(cluster.NewState())}
	var events []cluster.Event
	m := metrics.New(prometheus.NewRegistry(), metrics.Sources{})
	p := New(Deps{File: file, Self: "s1", Node: node, InForce: node.inForce, LeaderClient: func() *api.Client { return nil },
		LeaderAPI: func() string { return "" }, Record: func(_ context.Context, e cluster.Event) { events = append(events, e) },
		Metrics: m, Log: herdtest.Logger(t)})
	if got := p.Policy().Maintenance.PerSource; got == 4 {
		t.Fatal("the file's policy is in force before any reload")
	}
	ctx := context.Background()
	if err := p.Reload(ctx); err != nil {
		t.Fatalf("reload a valid file: %v", err)
	}
	if got := p.Policy().Maintenance.PerSource; got != 4 {
		t.Fatalf("per_source in force = %d after the reload, want 4", got)
	}
	st := p.Status()
	if st.Version != 1 || st.Drift || !st.ReloadOK || st.FileHash != st.Hash {
		t.Fatalf("status after a good reload: %+v", st)
	}

	if err := os.WriteFile(file, []byte("apiVersion: herd/v1\nkind: Policy\nmaintenance:\n  per_source: -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := p.Reload(ctx)
	if err == nil || !strings.Contains(err.Error(), "policy.yaml:4") {
		t.Fatalf("reload of a bad file: %v; want an error naming policy.yaml:4", err)
	}
	if got := p.Policy().Maintenance.PerSource; got != 4 {
		t.Fatalf("per_source in force = %d after a refused reload, want 4 still", got)
	}
	if st := p.Status(); st.Version != 1 || st.ReloadOK || st.ReloadErr == "" {
		t.Fatalf("status after a refused reload: %+v", st)
	}
	if len(events) != 1 || events[0].Type != "policy.reload_failed" {
		t.Fatalf("events recorded: %+v; want one policy.reload_failed", events)
	}
	var failed dto.Metric
	if err := m.PolicyReloads.WithLabelValues("error").Write(&failed); err != nil || failed.GetCounter().GetValue() != 1 {
		t.Fatalf("failed reloads counted: %v (%v), want 1", failed.GetCounter().GetValue(), err)
	}
}
