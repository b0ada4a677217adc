package daemon

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/drivers/vsphere"
	"github.com/herd-project/herd/internal/amtest"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

// counterValue reads a counter.
func counterValue(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil || m.Counter == nil {
		return 0
	}
	return m.Counter.GetValue()
}

func withAlertmanager(urls ...string) func(*policy.Document) {
	return func(d *policy.Document) { d.Alertmanager = policy.NewAlertmanagerPolicy(urls...) }
}

// silenceOf returns the active silence whose comment names host, or nil.
func silenceOf(am *amtest.AM, host string) *amtest.Silence {
	ss := am.ActiveSilences("host " + host + " ")
	if len(ss) != 1 {
		return nil
	}
	return &ss[0]
}

func silenceState(t *testing.T, am *amtest.AM, id string) string {
	all, err := am.Silences()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.ID == id {
			return s.Status.State
		}
	}
	return ""
}

func recordedSilence(s *Server, host string) *cluster.Silence {
	var out *cluster.Silence
	s.Node().FSM().Read(func(st *cluster.State) { out = st.Silences[host] })
	return out
}

// TestMaintenanceSilencesHostAlerts: a host entering maintenance gets an
// Alertmanager silence that suppresses its alerts but neither another
// host's nor Herd's own; leaving maintenance expires it.
func TestMaintenanceSilencesHostAlerts(t *testing.T) {
	am := amtest.Start(t, "")
	dev, c := startDevWith(t, 3, 6, nil, withAlertmanager(am.URL))
	ctx := context.Background()
	hosts := dev.Sim.HostNames()
	h, other := hosts[0], hosts[1]
	start := time.Now()
	ref, err := c.Maintenance(ctx, h, api.MaintenanceRequest{Status: "enable", Migrate: "active-only"})
	if err != nil {
		t.Fatal(err)
	}
	var sl *amtest.Silence
	testutil.WaitFor(t, 20*time.Second, "a silence for "+h, func() bool { sl = silenceOf(am, h); return sl != nil })
	t.Logf("silence active %s after the maintenance request", time.Since(start).Round(time.Millisecond))
	if sl.CreatedBy != "herd" || !strings.Contains(sl.Comment, ref.Operation) || !strings.Contains(sl.Comment, "api:127.0.0.1") {
		t.Errorf("silence should be made by herd and name the operation %s and its actor: %+v", ref.Operation, sl)
	}
	testutil.WaitFor(t, 5*time.Second, "the silence in the replicated state", func() bool {
		rec := recordedSilence(dev.Server, h)
		return rec != nil && rec.ID == sl.ID
	})
	if hv, err := c.Host(ctx, h); err != nil || hv.Silence == nil || hv.Silence.ID != sl.ID {
		t.Errorf("GET /v1/hosts/%s does not show the silence %s: %+v", h, sl.ID, hv)
	}
	alerts := []amtest.Alert{
		{Labels: map[string]string{"alertname": "NodeDiskFailing", "instance": h + ":9100"}},
		{Labels: map[string]string{"alertname": "NodeDiskFailing", "instance": other + ":9100"}},
		{Labels: map[string]string{"alertname": "HerdEvacuationStalled", "instance": h + ":9100", "host": h}},
	}
	if err := am.PostAlerts(alerts...); err != nil {
		t.Fatal(err)
	}
	want := []string{"suppressed", "active", "active"}
	testutil.WaitFor(t, 10*time.Second, "the host's alert silenced, the others not", func() bool {
		for i, a := range alerts {
			if am.AlertState(a.Labels) != want[i] {
				return false
			}
		}
		return true
	})
	waitOp(t, c, ref.Operation, 30*time.Second)
	exitAt := time.Now()
	exit, err := c.Maintenance(ctx, h, api.MaintenanceRequest{Status: "disable"})
	if err != nil {
		t.Fatal(err)
	}
	waitOp(t, c, exit.Operation, 30*time.Second)
	testutil.WaitFor(t, 10*time.Second, "the silence expired", func() bool {
		return silenceState(t, am, sl.ID) == "expired" && recordedSilence(dev.Server, h) == nil
	})
	t.Logf("silence expired %s after the exit request", time.Since(exitAt).Round(time.Millisecond))
	testutil.WaitFor(t, 10*time.Second, "the host's alert active again", func() bool { return am.AlertState(alerts[0].Labels) == "active" })
	evs := queryEvents(t, c, api.EventQuery{Host: h})
	if !hasEvent(evs, "alertmanager.silenced", sl.ID) || !hasEvent(evs, "alertmanager.unsilenced", sl.ID) {
		t.Errorf("events of %s do not tell of the silence %s: %+v", h, sl.ID, evs)
	}
}

// TestAlertmanagerDownNeverBlocksMaintenance: with Alertmanager stopped,
// an evacuation runs to its end, the failures are counted and told, and
// the silence is made once Alertmanager is back.
func TestAlertmanagerDownNeverBlocksMaintenance(t *testing.T) {
	am := amtest.Start(t, "")
	dev, c := startDevWith(t, 3, 6, nil, withAlertmanager(am.URL))
	ctx := context.Background()
	am.Stop()
	h := dev.Sim.HostNames()[0]
	ref, err := c.Maintenance(ctx, h, api.MaintenanceRequest{Status: "enable", Migrate: "active-only"})
	if err != nil {
		t.Fatal(err)
	}
	if op := waitOp(t, c, ref.Operation, 30*time.Second); op.State != api.OpSucceeded {
		t.Fatalf("evacuation with Alertmanager down: %+v", *op)
	}
	testutil.WaitFor(t, 10*time.Second, "errors counted", func() bool {
		return counterValue(dev.amMetrics.Errors.WithLabelValues("list")) >= 1
	})
	testutil.WaitFor(t, 5*time.Second, "alertmanager.error event", func() bool {
		return slices.ContainsFunc(queryEvents(t, c, api.EventQuery{}), func(e api.Event) bool { return e.Type == "alertmanager.error" })
	})
	am.Restart()
	start := time.Now()
	testutil.WaitFor(t, 45*time.Second, "a silence once Alertmanager is back", func() bool { return silenceOf(am, h) != nil })
	t.Logf("silence made %s after Alertmanager came back", time.Since(start).Round(time.Millisecond))
	testutil.WaitFor(t, 5*time.Second, "alertmanager.ok event", func() bool {
		return slices.ContainsFunc(queryEvents(t, c, api.EventQuery{}), func(e api.Event) bool { return e.Type == "alertmanager.ok" })
	})
}

// TestNewLeaderExpiresSilence: the silence made by one leader is in the
// replicated state, so the next leader keeps it (no second silence) and
// expires it when the host leaves maintenance.
func TestNewLeaderExpiresSilence(t *testing.T) {
	am := amtest.Start(t, "")
	sim, err := vsphere.StartSimulator(vsphere.SimConfig{Hosts: 3, VMs: 6})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	tc := newTestClusterWith(t, 3, sim, nil, withAlertmanager(am.URL))
	leader := tc.leader()
	c := tc.client(leader)
	waitInventory(t, c, 3, 6)
	ctx := context.Background()
	h := sim.HostNames()[0]
	if _, err := c.Maintenance(ctx, h, api.MaintenanceRequest{Status: "enable"}); err != nil {
		t.Fatal(err)
	}
	var sl *amtest.Silence
	testutil.WaitFor(t, 20*time.Second, "a silence for "+h, func() bool { sl = silenceOf(am, h); return sl != nil })
	follower := (leader + 1) % 3
	testutil.WaitFor(t, 10*time.Second, "the silence recorded on a follower", func() bool {
		rec := recordedSilence(tc.servers[follower], h)
		return rec != nil && rec.ID == sl.ID
	})
	tc.stop(leader)
	nl := tc.leader()
	c2 := tc.client(nl)
	exit, err := c2.Maintenance(ctx, h, api.MaintenanceRequest{Status: "disable"})
	if err != nil {
		t.Fatal(err)
	}
	waitOp(t, c2, exit.Operation, 30*time.Second)
	testutil.WaitFor(t, 20*time.Second, "the new leader expired the silence", func() bool {
		return silenceState(t, am, sl.ID) == "expired" && recordedSilence(tc.servers[nl], h) == nil
	})
	all, err := am.Silences()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.ID != sl.ID {
			t.Errorf("a second silence was made: %+v", s)
		}
	}
}

// TestRolloutHostIsSilenced: a host a rollout takes into maintenance is
// silenced while it is out, and the silence ends when the rollout brings
// it back.
func TestRolloutHostIsSilenced(t *testing.T) {
	am := amtest.Start(t, "")
	_, c := startDevWith(t, 3, 6, nil, func(d *policy.Document) {
		rolloutPolicy()(d)
		withAlertmanager(am.URL)(d)
	})
	ctx := context.Background()
	hs, err := c.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := hs[0].Name
	r, err := c.StartRollout(ctx, api.RolloutRequest{Hosts: []string{h}})
	if err != nil {
		t.Fatal(err)
	}
	waitRollout(t, c, r.ID, 30*time.Second, h+" working", func(r *api.Rollout) bool { return phaseOf(r, h) == "working" })
	var sl *amtest.Silence
	testutil.WaitFor(t, 10*time.Second, "a silence for "+h, func() bool { sl = silenceOf(am, h); return sl != nil })
	if _, err := c.ContinueRollout(ctx, r.ID, h); err != nil {
		t.Fatal(err)
	}
	waitRollout(t, c, r.ID, 30*time.Second, "rollout to end", ended)
	testutil.WaitFor(t, 10*time.Second, "the silence expired", func() bool { return silenceState(t, am, sl.ID) == "expired" })
}
