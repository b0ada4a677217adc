package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/internal/amtest"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

// webhookPolicy maps NodeECCErrors to evacuate, NodePSUFailed to
// not-accepting and NodeFanSlow to a note.
func webhookPolicy(share float64, urls ...string) func(*policy.Document) {
	return func(d *policy.Document) {
		a := policy.NewAlertmanagerPolicy(urls...)
		a.Webhook.MaxEvacuateShare = share
		a.Webhook.Actions = []policy.AlertAction{
			{Alertname: "NodeECCErrors", Labels: map[string]string{"severity": "critical"}, Action: policy.AlertEvacuate},
			{Alertname: "NodePSUFailed", Action: policy.AlertNotAccepting},
			{Alertname: "NodeFanSlow", Action: policy.AlertNote},
		}
		d.Alertmanager = a
	}
}

type hookAlert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Fingerprint string            `json:"fingerprint"`
}

func hookBody(version string, alerts ...hookAlert) []byte {
	b, _ := json.Marshal(map[string]any{"version": version, "status": "firing", "receiver": "herd", "groupKey": "{}:{}",
		"groupLabels": map[string]string{}, "commonLabels": map[string]string{}, "commonAnnotations": map[string]string{}, "alerts": alerts})
	return b
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func ecc(host, status string) hookAlert {
	return hookAlert{Status: status, Labels: map[string]string{"alertname": "NodeECCErrors", "severity": "critical", "instance": host + ":9100"},
		StartsAt: t0, Fingerprint: "fp-" + host}
}

func postHook(t *testing.T, addr string, body []byte) (int, api.Error) {
	t.Helper()
	resp, err := http.Post(addr+"/v1/alerts/webhook", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e api.Error
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e
}

// waitAlive waits until every host's health is alive: Herd evacuates
// only such hosts by itself.
func waitAlive(t *testing.T, s *Server) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, "every host alive", func() bool {
		alive := true
		s.Node().FSM().Read(func(st *cluster.State) {
			for _, h := range st.Hosts {
				alive = alive && h.Health == cluster.HealthAlive
			}
		})
		return alive
	})
}

// hostsView is what a refused delivery must not change.
func hostsView(s *Server) string {
	var b strings.Builder
	s.Node().FSM().Read(func(st *cluster.State) {
		for _, n := range st.HostNames() {
			h := st.Hosts[n]
			fmt.Fprintf(&b, "%s %s %s %s;", n, h.Admin, h.Maintenance, h.Operation)
		}
		fmt.Fprintf(&b, "ops=%d", len(st.Operations))
	})
	return b.String()
}

// TestAlertWebhookRefusesBadDeliveries: malformed payloads and alerts
// for unknown hosts get a 4xx naming the field and change nothing; a
// delivery asking to evacuate more than the policy's share of the hosts is
// refused, counted and told.
func TestAlertWebhookRefusesBadDeliveries(t *testing.T) {
	dev, c := startDevWith(t, 4, 4, nil, webhookPolicy(0.25))
	waitAlive(t, dev.Server)
	hosts := dev.Sim.HostNames()
	noHost := ecc("x", "firing")
	delete(noHost.Labels, "instance")
	noName := ecc(hosts[0], "firing")
	delete(noName.Labels, "alertname")
	odd := ecc(hosts[0], "pending")
	before := hostsView(dev.Server)
	for _, tc := range []struct {
		name  string
		body  []byte
		code  int
		field string
	}{
		{"not JSON", []byte("{"), 400, ""},
		{"version", hookBody("3", ecc(hosts[0], "firing")), 400, "version"},
		{"no alerts", hookBody("4"), 400, "alerts"},
		{"no alertname", hookBody("4", noName), 400, "alerts[0].labels.alertname"},
		{"no host label", hookBody("4", noHost), 400, "alerts[0].labels.instance"},
		{"status", hookBody("4", odd), 400, "alerts[0].status"},
		// The unknown host comes second: the first alert is not acted on.
		{"unknown host", hookBody("4", ecc(hosts[0], "firing"), ecc("nosuchhost", "firing")), 404, "alerts[1].labels.instance"},
		{"storm", hookBody("4", ecc(hosts[0], "firing"), ecc(hosts[1], "firing")), 409, "alerts"},
	} {
		code, e := postHook(t, dev.APIAddr(), tc.body)
		if code != tc.code || e.Field != tc.field {
			t.Errorf("%s: %d %+v, want %d naming %q", tc.name, code, e, tc.code, tc.field)
		}
		if got := hostsView(dev.Server); got != before {
			t.Fatalf("%s changed the hosts:\n%s\nwas\n%s", tc.name, got, before)
		}
	}
	if n := counterValue(dev.amMetrics.EvacuationsRefused); n != 2 {
		t.Errorf("herd_alert_evacuations_refused_total = %v, want 2", n)
	}
	if !hasEvent(queryEvents(t, c, api.EventQuery{}), "alert.storm", "max_evacuate_share") {
		t.Error("the refused storm is not in the events")
	}
	// One host may go; a second while it is out may not.
	resp, err := http.Post(dev.APIAddr()+"/v1/alerts/webhook", "application/json", bytes.NewReader(hookBody("4", ecc(hosts[0], "firing"))))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "evacuating") {
		t.Fatalf("one host: %d %s", resp.StatusCode, b)
	}
	if code, e := postHook(t, dev.APIAddr(), hookBody("4", ecc(hosts[1], "firing"))); code != 409 {
		t.Fatalf("a second host while the first is out: %d %+v", code, e)
	}
}

// TestAlertWebhookActions: not-accepting and note act once per alert;
// resolved alerts undo nothing; a host made NOT_ACCEPTING by one alert is
// still evacuated by a worse one.
func TestAlertWebhookActions(t *testing.T) {
	dev, c := startDevWith(t, 3, 3, nil, webhookPolicy(0.5))
	waitAlive(t, dev.Server)
	hosts := dev.Sim.HostNames()
	psu := hookAlert{Status: "firing", Labels: map[string]string{"alertname": "NodePSUFailed", "instance": hosts[1]}, StartsAt: t0, Fingerprint: "psu"}
	fan := hookAlert{Status: "firing", Labels: map[string]string{"alertname": "NodeFanSlow", "instance": hosts[2] + ":9100"}, StartsAt: t0, Fingerprint: "fan"}
	other := hookAlert{Status: "firing", Labels: map[string]string{"alertname": "SomethingElse", "instance": "not-a-host"}, StartsAt: t0}
	for i := 0; i < 2; i++ {
		if code, e := postHook(t, dev.APIAddr(), hookBody("4", psu, fan, other)); code != 200 {
			t.Fatalf("delivery %d: %d %+v", i, code, e)
		}
	}
	if h, _ := c.Host(context.Background(), hosts[1]); h.Admin != api.NotAccepting {
		t.Errorf("PSU alert: host %s is %s", hosts[1], h.Admin)
	}
	notes := 0
	for _, e := range queryEvents(t, c, api.EventQuery{Host: hosts[2]}) {
		if e.Type == "alert.note" {
			notes++
		}
	}
	if notes != 1 {
		t.Errorf("a repeated note alert left %d notes, want 1", notes)
	}
	psu.Status = "resolved"
	if code, _ := postHook(t, dev.APIAddr(), hookBody("4", psu)); code != 200 {
		t.Fatal(code)
	}
	if h, _ := c.Host(context.Background(), hosts[1]); h.Admin != api.NotAccepting {
		t.Errorf("a resolved alert undid NOT_ACCEPTING: %s", h.Admin)
	}
	if code, _ := postHook(t, dev.APIAddr(), hookBody("4", ecc(hosts[1], "firing"))); code != 200 {
		t.Fatal(code)
	}
	if h, _ := c.Host(context.Background(), hosts[1]); h.Maintenance == api.MaintenanceOff {
		t.Errorf("an evacuate alert left the NOT_ACCEPTING host %s out of maintenance", hosts[1])
	}
}

// TestAlertmanagerRoutesAlertToEvacuation: a firing alert posted to a
// real Alertmanager reaches Herd's webhook and the host named by its
// instance label is evacuated; a repeated and a resolved notification
// change nothing; an alert for an unknown host is answered 404. It also
// measures the time from the alert to the host entering maintenance
// (Alertmanager's group_wait is 50ms).
func TestAlertmanagerRoutesAlertToEvacuation(t *testing.T) {
	dev, c := startDevWith(t, 6, 12, nil, webhookPolicy(0.5))
	waitAlive(t, dev.Server)
	ctx := context.Background()
	am := amtest.Start(t, fmt.Sprintf(`route:
  receiver: herd
  group_by: [alertname, instance]
  group_wait: 50ms
  group_interval: 1s
  repeat_interval: 2s
receivers:
  - name: herd
    webhook_configs:
      - url: %s/v1/alerts/webhook
        send_resolved: true
`, dev.APIAddr()))
	hosts := dev.Sim.HostNames()
	inMaint := func(h string) bool {
		var m cluster.MaintenanceState
		dev.Node().FSM().Read(func(st *cluster.State) { m = st.Hosts[h].Maintenance })
		return m != cluster.MaintenanceOff
	}
	var lat []time.Duration
	for i, h := range hosts[:3] {
		alert := amtest.Alert{Labels: map[string]string{"alertname": "NodeECCErrors", "severity": "critical", "instance": h + ":9100", "run": fmt.Sprint(i)}}
		start := time.Now()
		if err := am.PostAlerts(alert); err != nil {
			t.Fatal(err)
		}
		for !inMaint(h) {
			if time.Since(start) > 20*time.Second {
				t.Fatalf("host %s not in maintenance 20s after its alert", h)
			}
			time.Sleep(2 * time.Millisecond)
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("alert posted to Alertmanager -> host in maintenance: median %s (runs %v; group_wait 50ms)", lat[1].Round(time.Millisecond), lat)
	h := hosts[0]
	hv, _ := c.Host(ctx, h)
	ops, _ := c.Operations(ctx, h)
	if len(ops) != 1 || ops[0].Actor != "alertmanager" || ops[0].Kind != api.OpEvacuate || ops[0].Migrate != "active-only" {
		t.Fatalf("operations of %s: %+v", h, ops)
	}
	waitOp(t, c, hv.Operation, 30*time.Second)
	if vms, _ := c.VMs(ctx, h); len(vms) != 0 {
		t.Errorf("host %s still holds %d VMs after its alert's evacuation", h, len(vms))
	}
	// Alertmanager repeats the notification every repeat_interval.
	testutil.WaitFor(t, 15*time.Second, "a repeated notification", func() bool {
		return counterValue(dev.amMetrics.WebhookAlerts.WithLabelValues("evacuate", "repeat")) >= 1
	})
	// Resolved: nothing is undone.
	alert := amtest.Alert{Labels: map[string]string{"alertname": "NodeECCErrors", "severity": "critical", "instance": h + ":9100", "run": "0"},
		EndsAt: time.Now().Add(-time.Second)}
	if err := am.PostAlerts(alert); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, "the resolved notification", func() bool {
		return counterValue(dev.amMetrics.WebhookAlerts.WithLabelValues("evacuate", "resolved")) >= 1
	})
	if ops2, _ := c.Operations(ctx, h); len(ops2) != 1 {
		t.Errorf("repeat or resolved notifications started operations: %+v", ops2)
	}
	if hv2, _ := c.Host(ctx, h); hv2.Maintenance != api.MaintenanceOn || hv2.Operation != hv.Operation {
		t.Errorf("host after the resolved notification: %s %s", hv2.Maintenance, hv2.Operation)
	}
	// An alert for a host Herd does not know: 404, nothing changes.
	before := hostsView(dev.Server)
	if err := am.PostAlerts(amtest.Alert{Labels: map[string]string{"alertname": "NodeECCErrors", "severity": "critical", "instance": "nosuchhost:9100"}}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, "a 404 to the unknown host's notification", func() bool {
		return counterValue(dev.metrics.APIRequests.WithLabelValues("/v1/alerts/webhook", "POST", "404")) >= 1
	})
	if got := hostsView(dev.Server); got != before {
		t.Errorf("the unknown host's alert changed the hosts:\n%s\nwas\n%s", got, before)
	}
}
