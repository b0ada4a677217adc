package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/policysource"
	"github.com/herd-project/herd/drivers/vsphere"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

func policyYAML(t *testing.T, edit func(*policy.Document)) []byte {
	t.Helper()
	doc := policysource.Default()
	edit(doc)
	y, err := doc.YAML()
	if err != nil {
		t.Fatal(err)
	}
	return y
}

func metricsText(t *testing.T, s *Server) string {
	t.Helper()
	resp, err := http.Get(s.APIAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestPolicyReplicatedReloadedAndDrift(t *testing.T) {
	sim, err := vsphere.StartSimulator(vsphere.SimConfig{Hosts: 2, VMs: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	tc := newTestCluster(t, 3, sim)
	leader := tc.leader()
	ctx := context.Background()
	// The servers' (identical) files are in force once the cluster forms.
	testutil.WaitFor(t, 10*time.Second, "the servers' policy in force", func() bool {
		st := tc.servers[leader].Node().FSM().State()
		return st.Policy != nil && st.Policy.Version == 1
	})

	// Applied through a follower, the new policy is in force everywhere.
	follower := (leader + 1) % 3
	y := policyYAML(t, func(p *policy.Document) { p.Maintenance.PerSource = 4 })
	info, err := tc.client(follower).ApplyPolicy(ctx, y, "test")
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != 2 {
		t.Fatalf("applied policy version %d, want 2", info.Version)
	}
	for _, s := range tc.servers {
		s := s
		testutil.WaitFor(t, 5*time.Second, "policy on "+s.cfg.NodeName, func() bool { return s.Policy().Maintenance.PerSource == 4 })
	}
	// Every server's file now differs from the policy in force: drift.
	for i := range tc.servers {
		testutil.WaitFor(t, 5*time.Second, fmt.Sprintf("server %d reports drift", i+1), func() bool {
			cl, err := tc.client(i).Cluster(ctx)
			return err == nil && cl.Policy.Drift && cl.Policy.Version == 2
		})
	}
	if m := metricsText(t, tc.servers[follower]); !strings.Contains(m, "herd_policy_drift 1") || !strings.Contains(m, "herd_policy_version 2") {
		t.Fatalf("drift metrics missing")
	}

	// A bad file on SIGHUP is refused; the policy in force stays; an event
	// and the metrics say why.
	bad := tc.servers[follower]
	if err := os.WriteFile(bad.cfg.PolicyFile, []byte("apiVersion: herd/v1\nkind: Policy\nmaintenance:\n  per_source: lots\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := bad.ReloadPolicy(ctx); err == nil || !strings.Contains(err.Error(), "policy.yaml:4:15") {
		t.Fatalf("reload of a bad file: %v", err)
	}
	if v := bad.Node().FSM().State().Policy.Version; v != 2 {
		t.Fatalf("a bad file changed the policy in force to version %d", v)
	}
	if m := metricsText(t, bad); !strings.Contains(m, "herd_policy_last_reload_success 0") || !strings.Contains(m, `herd_policy_reloads_total{result="error"} 1`) {
		t.Fatal("reload failure metrics missing")
	}
	testutil.WaitFor(t, 5*time.Second, "policy.reload_failed event", func() bool {
		ev, _ := tc.client(leader).Events(ctx, api.EventQuery{})
		for _, e := range ev.Events {
			// Without API tokens the leader cannot tell a server from anyone
			// else: a follower's own event arrives as a note that names it.
			if e.Type == "note" && strings.HasPrefix(e.Message, "policy.reload_failed") && strings.Contains(e.Message, bad.cfg.NodeName) {
				return true
			}
		}
		return false
	})

	// A good file, changed on disk, is picked up by the watcher and put in force.
	good := tc.servers[(leader+2)%3]
	y = policyYAML(t, func(p *policy.Document) { p.Maintenance.PerSource = 3 })
	if err := os.WriteFile(good.cfg.PolicyFile, y, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the changed file in force", func() bool {
		return tc.servers[leader].Policy().Maintenance.PerSource == 3
	})
	testutil.WaitFor(t, 5*time.Second, "no drift on the server whose file is in force", func() bool {
		cl, err := tc.client((leader + 2) % 3).Cluster(ctx)
		return err == nil && !cl.Policy.Drift && cl.Policy.Version == 3
	})
}

func TestPolicyAPIRefusesBadPolicies(t *testing.T) {
	dev, c := startDev(t, 1, 0)
	ctx := context.Background()
	testutil.WaitFor(t, 10*time.Second, "a policy in force", func() bool { return dev.Node().FSM().State().Policy != nil })
	before := dev.Node().FSM().State().Policy
	bad := "apiVersion: herd/v1\nkind: Policy\nplacement:\n  strategy: scatter\nmaintenance:\n  per_sorce: 2\n"
	_, err := c.ApplyPolicy(ctx, []byte(bad), "test")
	var se *api.StatusError
	if !errors.As(err, &se) || se.Code != 400 || len(se.Body.Errors) != 2 {
		t.Fatalf("bad policy: %v", err)
	}
	for i, want := range []struct{ line, col int }{{4, 13}, {6, 3}} {
		if d := se.Body.Errors[i]; d.Line != want.line || d.Column != want.col {
			t.Errorf("error %d at %d:%d, want %d:%d (%s)", i, d.Line, d.Column, want.line, want.col, d.Message)
		}
	}
	if err := c.ValidatePolicy(ctx, []byte(bad)); !errors.As(err, &se) || se.Code != 400 {
		t.Fatalf("validate: %v", err)
	}
	if after := dev.Node().FSM().State().Policy; after.Version != before.Version || after.Hash != before.Hash {
		t.Fatalf("a refused policy changed the policy in force")
	}
	// A valid one via the API, and GET returns it.
	y := policyYAML(t, func(p *policy.Document) { p.Placement.Strategy = policy.StrategyPack })
	info, err := c.ApplyPolicy(ctx, y, "test")
	if err != nil {
		t.Fatal(err)
	}
	got, gi, err := c.Policy(ctx)
	if err != nil || gi.Version != info.Version || string(got) != string(y) {
		t.Fatalf("GET /v1/policy: version %d (%v)\n%s", gi.Version, err, got)
	}
	// A conditional apply against a stale version is refused.
	req, _ := http.NewRequest(http.MethodPut, c.Base+"/v1/policy", strings.NewReader(string(policyYAML(t, func(p *policy.Document) {}))))
	req.Header.Set("If-Match", fmt.Sprint(info.Version-1))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 409 {
		t.Fatalf("stale If-Match: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
}
