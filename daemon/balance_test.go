package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/drivers/vsphere"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

// crowd moves most VMs onto the first host behind Herd's back, and waits
// until Herd sees it.
func crowd(t *testing.T, dev *DevServer, c *api.Client, n int) {
	t.Helper()
	ctx := context.Background()
	d, err := vsphere.New(ctx, dev.Sim.Config(), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	first := dev.Sim.HostNames()[0]
	vms, _ := c.VMs(ctx, "")
	moved := 0
	for _, vm := range vms {
		if vm.Host != first && vm.Power == api.PoweredOn && moved < n {
			if err := d.Migrate(ctx, vm.ID, first, "live"); err != nil {
				t.Fatal(err)
			}
			moved++
		}
	}
	if _, err := dev.SyncInventory(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
}

func TestBalancerRecommendApplyAutomatic(t *testing.T) {
	// A must rule keeps the big VMs off the last host: balancing honours it.
	keepOff := func(p *policy.Document, last string) {
		p.HostGroups = []policy.HostGroup{{Name: "last", Hosts: []string{last}}}
		p.VMGroups = []policy.VMGroup{{Name: "big", VMs: []string{"vm-005", "vm-009", "vm-010", "vm-015"}}}
		p.Rules = []policy.Rule{{Name: "big-off-last", Type: policy.RuleVMHostAntiAffinity, VMGroup: "big", HostGroup: "last", Enforcement: policy.Must}}
	}
	var last string
	dev, c := startDevWith(t, 4, 24, nil, func(p *policy.Document) {
		p.Balancing.Mode = policy.BalanceRecommend
		p.Balancing.Interval = time.Second
		p.Balancing.Threshold = 0.02
		p.Placement.MemoryReserve = 0.5 // hosts of 128 GiB usable: the crowd shows
		keepOff(p, "DC0_C0_H3")
	})
	last = dev.Sim.HostNames()[3]
	if last != "DC0_C0_H3" {
		t.Fatalf("simulator host names changed: %v", dev.Sim.HostNames())
	}
	bigOffLast := func() {
		t.Helper()
		vms, _ := c.VMs(context.Background(), last)
		for _, vm := range vms {
			switch vm.Name {
			case "vm-005", "vm-009", "vm-010", "vm-015":
				t.Errorf("must rule broken: %s runs on %s", vm.Name, last)
			}
		}
	}
	// The simulator puts vm-004, vm-008… on the last host: none of the big group.
	bigOffLast()
	crowd(t, dev, c, 12)
	ctx := context.Background()
	plan, err := c.BalancePlan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Moves) == 0 || plan.Before <= plan.Threshold || plan.After > plan.Threshold+1e-9 {
		t.Fatalf("plan on an uneven cluster: %+v", plan)
	}
	for _, m := range plan.Moves {
		if m.From != dev.Sim.HostNames()[0] {
			t.Errorf("move %+v does not leave the crowded host", m)
		}
	}
	// recommend moves nothing by itself.
	before := dev.Node().FSM().State().Index
	time.Sleep(2500 * time.Millisecond)
	if ops, _ := c.Operations(ctx, ""); len(ops) != 0 {
		t.Fatalf("recommend mode started %d operations", len(ops))
	}
	_ = before
	// Applied by an operator, the moves run and the imbalance falls below the threshold.
	ref, err := c.BalanceApply(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if op := waitOp(t, c, ref.Operation, 30*time.Second); op.State != api.OpSucceeded || op.Done != len(plan.Moves) {
		t.Fatalf("balance operation: %+v", *op)
	}
	after, _ := c.BalancePlan(ctx)
	if after.Before > plan.Threshold+1e-9 || len(after.Moves) != 0 {
		t.Fatalf("after applying: %+v", after)
	}
	bigOffLast()
	var se *api.StatusError
	if _, err := c.BalanceApply(ctx); !errors.As(err, &se) || se.Code != 409 {
		t.Fatalf("apply on a balanced cluster: %v", err)
	}

	// automatic balances on its own.
	crowd(t, dev, c, 8)
	y := policyYAML(t, func(p *policy.Document) {
		p.Balancing.Mode, p.Balancing.Interval, p.Balancing.Threshold = policy.BalanceAutomatic, time.Second, 0.02
		p.Placement.MemoryReserve = 0.5
		keepOff(p, last)
	})
	if _, err := c.ApplyPolicy(ctx, y, "test"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "automatic balancing", func() bool {
		ops, _ := c.Operations(ctx, "")
		n := 0
		for _, o := range ops {
			if o.Kind == api.OpBalance && o.State == api.OpSucceeded {
				n++
			}
		}
		p, _ := c.BalancePlan(ctx)
		return n == 2 && p != nil && p.Before <= p.Threshold+1e-9
	})
	bigOffLast()
}

func TestFailoverCapacityGuardsMaintenance(t *testing.T) {
	dev, c := startDevWith(t, 3, 9, nil, func(p *policy.Document) {
		p.Placement.MemoryReserve = 0.85 // about 38 GiB usable per host
		p.Failover.MinHostFailures = 1
	})
	ctx := context.Background()
	m := metricsText(t, dev.Server)
	if !strings.Contains(m, "herd_cluster_failover_capacity_hosts 1") || !strings.Contains(m, "herd_cluster_failover_capacity_min_hosts 1") {
		t.Fatalf("failover metrics:\n%s", grepLines(m, "failover"))
	}
	host := dev.Sim.HostNames()[0]
	var se *api.StatusError
	_, err := c.Maintenance(ctx, host, api.MaintenanceRequest{Status: "enable", Migrate: "active-only"})
	if !errors.As(err, &se) || se.Code != 409 || se.Body.Field != "force" || !strings.Contains(fmt.Sprint(se.Body.Blockers), "failover capacity would drop to 0") {
		t.Fatalf("maintenance below the failover minimum: %v", err)
	}
	if h, _ := c.Host(ctx, host); h.Maintenance != api.MaintenanceOff {
		t.Fatal("refused enable changed the host")
	}
	if _, err := c.Maintenance(ctx, host, api.MaintenanceRequest{Status: "enable", Migrate: "active-only", Force: true}); err != nil {
		t.Fatalf("forced: %v", err)
	}
}

func grepLines(text, word string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// needProgram finds (or, as root, installs) a program from a Debian package.
func needProgram(t *testing.T, bin, pkg string) string { return testutil.NeedProgram(t, bin, pkg) }

// TestBalanceByPrometheusCPU balances by CPU read from a real Prometheus
// that scrapes a small exporter started here; when Prometheus goes away
// the balancer falls back to memory with an event, and does not fail.
func TestBalanceByPrometheusCPU(t *testing.T) {
	prom := needProgram(t, "prometheus", "prometheus")
	dev, c := startDevWith(t, 3, 9, nil, nil)
	hosts := dev.Sim.HostNames()

	// The exporter: the first host is busy, the others idle.
	exp, _ := net.Listen("tcp", "127.0.0.1:0")
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		for i, h := range hosts {
			v := 0.1
			if i == 0 {
				v = 0.95
			}
			fmt.Fprintf(w, "node_cpu_busy_ratio{host=%q} %v\n", h, v)
		}
	})
	go http.Serve(exp, mux)
	defer exp.Close()

	promAddr, stop := startPrometheus(t, prom, exp.Addr().String())
	defer stop()

	ctx := context.Background()
	y := policyYAML(t, func(p *policy.Document) {
		p.Balancing.Mode, p.Balancing.Metric, p.Balancing.Threshold = policy.BalanceRecommend, policy.BalanceByCPU, 0.05
		p.MetricSources.Prometheus = &policy.PrometheusSource{URL: "http://" + promAddr, Timeout: 2 * time.Second,
			CPUQuery: "node_cpu_busy_ratio", HostLabel: "host"}
	})
	if _, err := c.ApplyPolicy(ctx, y, "test"); err != nil {
		t.Fatal(err)
	}
	var plan *api.BalancePlan
	testutil.WaitFor(t, 30*time.Second, "a cpu-based plan from Prometheus", func() bool {
		p, err := c.BalancePlan(ctx)
		plan = p
		return err == nil && p.Metric == policy.BalanceByCPU && p.Note == "" && len(p.Moves) > 0
	})
	for _, m := range plan.Moves {
		if m.From != hosts[0] {
			t.Errorf("cpu plan moves from %s, not the busy host %s", m.From, hosts[0])
		}
	}
	// A query with no data: memory, with a note.
	noData := policyYAML(t, func(p *policy.Document) {
		p.Balancing.Mode, p.Balancing.Metric, p.Balancing.Threshold = policy.BalanceRecommend, policy.BalanceByCPU, 0.05
		p.MetricSources.Prometheus = &policy.PrometheusSource{URL: "http://" + promAddr, Timeout: 2 * time.Second,
			CPUQuery: "no_such_metric", HostLabel: "host"}
	})
	if _, err := c.ApplyPolicy(ctx, noData, "test"); err != nil {
		t.Fatal(err)
	}
	if p, err := c.BalancePlan(ctx); err != nil || p.Metric != policy.BalanceByMemory || !strings.Contains(p.Note, "no data") {
		t.Fatalf("plan on a query with no data: %+v %v", p, err)
	}
	if _, err := c.ApplyPolicy(ctx, y, "test"); err != nil {
		t.Fatal(err)
	}
	// Prometheus gone: memory, a note and an event; no crash, no wild moves.
	stop()
	fallback, err := c.BalancePlan(ctx)
	if err != nil || fallback.Metric != policy.BalanceByMemory || !strings.Contains(fallback.Note, "cpu metric unavailable") {
		t.Fatalf("plan without Prometheus: %+v %v", fallback, err)
	}
	testutil.WaitFor(t, 5*time.Second, "balance.metric_fallback event", func() bool {
		ev, _ := c.Events(ctx, api.EventQuery{})
		for _, e := range ev.Events {
			if e.Type == "balance.metric_fallback" {
				return true
			}
		}
		return false
	})
	if !strings.Contains(metricsText(t, dev.Server), `herd_metric_source_errors_total{source="prometheus"}`) {
		t.Error("no metric source error counted")
	}
}

// startPrometheus runs a real Prometheus scraping target every second; stop
// (also run at the end of the test) kills it.
func startPrometheus(t *testing.T, prom, target string) (addr string, stop func()) {
	t.Helper()
	dir := t.TempDir()
	addr = testutil.FreePort(t)
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: hosts\n    honor_labels: true\n    static_configs:\n      - targets: [%q]\n", target)
	os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644)
	cmd := exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
	t.Cleanup(stop)
	return addr, stop
}

// The failover gauge is that of the state the scrape reads: the first
// scrape after a committed change shows the capacity it leaves, never the
// one computed before.
func TestFailoverGaugeFollowsTheState(t *testing.T) {
	dev, c := startDevWith(t, 3, 9, nil, func(p *policy.Document) {
		p.Placement.MemoryReserve = 0.85 // about 38 GiB usable per host
		p.Failover.MinHostFailures = 1
	})
	if m := metricsText(t, dev.Server); !strings.Contains(m, "herd_cluster_failover_capacity_hosts 1") {
		t.Fatalf("failover metrics:\n%s", grepLines(m, "failover"))
	}
	// No host takes recovered VMs any more: the loss of one is not absorbed.
	for _, host := range dev.Sim.HostNames() {
		if _, err := c.SetHostStatus(context.Background(), host, api.StatusRequest{Status: string(cluster.NotAccepting), Reason: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	if m := metricsText(t, dev.Server); !strings.Contains(m, "herd_cluster_failover_capacity_hosts 0") {
		t.Fatalf("first scrape after no host accepts: %s", grepLines(m, "failover_capacity_hosts"))
	}
}
