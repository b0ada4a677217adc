package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

// TestHostHealthFromTheManager: a host whose vCenter connection stops
// answering goes suspect, then dead; when it answers again it comes back
// alive after alive_after — each step in the action log.
func TestHostHealthFromTheManager(t *testing.T) {
	dev, c := startDevWith(t, 2, 2, nil, func(p *policy.Document) {
		p.Health = policy.HealthPolicy{SuspectAfter: time.Second, DeadAfter: 3 * time.Second, AliveAfter: time.Second}
		p.Recovery.Automatic = false // health only: no fencing here
	})
	ctx := context.Background()
	host := dev.Sim.HostNames()[0]
	health := func() api.HostHealth {
		h, err := c.Host(ctx, host)
		if err != nil {
			return ""
		}
		return h.Health
	}
	testutil.WaitFor(t, 10*time.Second, "hosts alive", func() bool { return health() == api.HealthAlive })

	if err := dev.Sim.SetHostConnection(host, drivers.NotResponding); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, "host dead", func() bool { return health() == api.HealthDead })
	var seq []string
	ev, _ := c.Events(ctx, api.EventQuery{Host: host})
	for _, e := range ev.Events {
		if e.Type == "host.health" {
			seq = append(seq, e.Message)
		}
	}
	if len(seq) < 3 {
		t.Fatalf("health events %v: want alive, suspect, dead", seq)
	}
	// A dead host needs recovery, not maintenance.
	pc, _ := c.Precheck(ctx, host, api.MaintenanceRequest{Status: "enable"})
	if pc == nil || len(pc.Blockers) == 0 {
		t.Fatalf("precheck of a dead host: %+v", pc)
	}
	if err := dev.Sim.SetHostConnection(host, drivers.Connected); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, "host alive again", func() bool { return health() == api.HealthAlive })
	m := metricsText(t, dev.Server)
	if !containsLine(m, `herd_host_health{host="`+host+`",state="alive"} 1`) {
		t.Errorf("health metric:\n%s", grepLines(m, "herd_host_health"))
	}
}

func containsLine(text, line string) bool {
	return slices.Contains(strings.Split(text, "\n"), line)
}

// TestPrometheusHealthSignals: with a real Prometheus scraping an exporter,
// the policy's down_query makes a host suspect (never dead while its
// manager answers) and its degraded_query evacuates a failing host through
// maintenance before it dies.
func TestPrometheusHealthSignals(t *testing.T) {
	prom := needProgram(t, "prometheus", "prometheus")
	dev, c := startDevWith(t, 3, 9, nil, nil)
	hosts := dev.Sim.HostNames()
	down, sick := hosts[0], hosts[1]
	exp, _ := net.Listen("tcp", "127.0.0.1:0")
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		for _, h := range hosts {
			fmt.Fprintf(w, "node_up{host=%q} %d\n", h, map[bool]int{true: 0, false: 1}[h == down])
			fmt.Fprintf(w, "edac_uncorrectable_errors{host=%q} %d\n", h, map[bool]int{true: 3, false: 0}[h == sick])
		}
	})
	go http.Serve(exp, mux)
	defer exp.Close()
	promAddr, _ := startPrometheus(t, prom, exp.Addr().String())

	ctx := context.Background()
	y := policyYAML(t, func(p *policy.Document) {
		p.Health = policy.HealthPolicy{SuspectAfter: time.Second, DeadAfter: 3 * time.Second, AliveAfter: time.Second,
			DownQuery: "node_up == 0", DegradedQuery: "edac_uncorrectable_errors > 0"}
		p.MetricSources.Prometheus = &policy.PrometheusSource{URL: "http://" + promAddr, Timeout: 2 * time.Second, HostLabel: "host"}
	})
	if _, err := c.ApplyPolicy(ctx, y, "test"); err != nil {
		t.Fatal(err)
	}
	var op *api.Operation
	testutil.WaitFor(t, 40*time.Second, "the degraded host evacuated", func() bool {
		ops, _ := c.Operations(ctx, sick)
		for i := range ops {
			if ops[i].Kind == api.OpEvacuate {
				op = &ops[i]
				return true
			}
		}
		return false
	})
	if op.Actor != "health" {
		t.Errorf("evacuation started by %q, want health", op.Actor)
	}
	if !hasEvent(hostEvents(t, c, sick), "maintenance.entering", "hardware degraded: degraded_query edac_uncorrectable_errors > 0") {
		t.Error("no event says why the host was evacuated")
	}
	waitOp(t, c, op.ID, 30*time.Second)
	if h, _ := c.Host(ctx, sick); h.Maintenance != api.MaintenanceOn {
		t.Errorf("degraded host maintenance %s, want on", h.Maintenance)
	}
	testutil.WaitFor(t, 20*time.Second, "down_query makes a host suspect", func() bool {
		h, _ := c.Host(ctx, down)
		return h != nil && h.Health == api.HealthSuspect
	})
	time.Sleep(4 * time.Second) // past dead_after: the manager still answers
	if h, _ := c.Host(ctx, down); h.Health != api.HealthSuspect {
		t.Errorf("host listed by down_query only is %s, want suspect", h.Health)
	}
	if !hasEvent(hostEvents(t, c, down), "host.health", "Prometheus down_query lists it") {
		t.Error("no health event names the Prometheus signal")
	}
}
