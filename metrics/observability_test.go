package metrics_test

// Checks of the observability configs against the metrics Herd really
// exposes: the alert rules (configs/prometheus) and the Grafana dashboards
// (configs/grafana). The metric names come from a live dev server, never from
// a list kept here.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/herd-project/herd/daemon"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/daemontest"
	"github.com/herd-project/herd/internal/testutil"
)

const (
	promDir    = "../configs/prometheus"
	grafanaDir = "../configs/grafana"
	alertsFile = promDir + "/herd-alerts.yml"
	alertTests = promDir + "/herd-alerts.test.yml"
)

// live is one scrape of a dev server that has run an evacuation, so that
// the labelled metrics (migrations, their durations) exist too.
type live struct {
	text string
	// names are the metric names a query can select: every family, with
	// _bucket, _sum and _count for histograms (and _sum, _count for
	// summaries), and every name the registry describes.
	names map[string]bool
	// described are the names only the registry's Describe gave (metrics
	// with labels that nothing has set yet).
	described []string
}

var (
	liveMu     sync.Mutex
	liveScrape *live
)

// liveMetrics starts a dev server once, evacuates a host, and scrapes it.
func liveMetrics(t *testing.T) *live {
	t.Helper()
	liveMu.Lock()
	defer liveMu.Unlock()
	if liveScrape != nil {
		return liveScrape
	}
	dev := daemontest.StartDev(t, daemon.DevOptions{Hosts: 2, VMs: 4})
	c, err := api.NewClient(dev.APIAddr(), "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var host string
	testutil.WaitFor(t, 20*time.Second, "the inventory of 2 hosts and 4 VMs", func() bool {
		hs, err := c.Hosts(ctx)
		if err != nil || len(hs) != 2 {
			return false
		}
		n := 0
		for _, h := range hs {
			n += h.VMs
			if h.VMs > 0 {
				host = h.Name
			}
		}
		return n == 4
	})
	ref, err := c.Maintenance(ctx, host, api.MaintenanceRequest{Status: "enable", Migrate: "all"})
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the evacuation of "+host, func() bool {
		op, err := c.Operation(ctx, ref.Operation)
		return err == nil && op.State.Terminal()
	})
	if op, _ := c.Operation(ctx, ref.Operation); op.State != api.OpSucceeded {
		t.Fatalf("evacuation of %s: %+v", host, op)
	}
	resp, err := http.Get(dev.APIAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	l := &live{text: string(b), names: familyNames(string(b))}
	for _, n := range describedNames(dev.Registry()) {
		if !l.names[n] {
			l.names[n] = true
			l.described = append(l.described, n)
		}
	}
	sort.Strings(l.described)
	liveScrape = l
	return l
}

// familyNames reads the metric names of a text exposition.
func familyNames(text string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 4 && f[0] == "#" && f[1] == "TYPE":
			names[f[2]] = true
			switch f[3] {
			case "histogram":
				names[f[2]+"_bucket"], names[f[2]+"_sum"], names[f[2]+"_count"] = true, true, true
			case "summary":
				names[f[2]+"_sum"], names[f[2]+"_count"] = true, true
			}
		case len(f) >= 2 && f[0] != "#":
			name, _, _ := strings.Cut(f[0], "{")
			names[name] = true
		}
	}
	return names
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// describedNames are the names of every collector registered on reg.
func describedNames(reg *prometheus.Registry) []string {
	ch := make(chan *prometheus.Desc)
	go func() {
		reg.Describe(ch)
		close(ch)
	}()
	var out []string
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// alertRule is one rule of herd-alerts.yml.
type alertRule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadRules(t *testing.T) []alertRule {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	if len(f.Groups) != 1 || f.Groups[0].Name != "herd" {
		t.Fatalf("%s: want one group named herd, got %d groups", alertsFile, len(f.Groups))
	}
	return f.Groups[0].Rules
}

// wantAlerts are the alerts the design asks for.
var wantAlerts = []string{"HerdNoRaftLeader", "HerdServerDown", "HerdRaftFollowerLagging", "HerdHostDead",
	"HerdHostDisconnected", "HerdMaintenanceError", "HerdEvacuationStalled", "HerdMigrationFailureRatioHigh",
	"HerdFailoverCapacityLow", "HerdPolicyReloadFailed", "HerdPolicyDrift", "HerdInventorySyncFailing",
	"HerdLeaderFlapping"}

// selectors parses a PromQL expression and returns the metric names it
// selects.
func selectors(expr string) ([]string, error) {
	e, err := parser.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == "__name__" {
				name = m.Value
			}
		}
		names = append(names, name)
		return nil
	})
	if len(names) == 0 {
		return nil, fmt.Errorf("selects no metric")
	}
	return names, nil
}

// checkExpr reports the parse errors and unknown metrics of one expression.
func checkExpr(t *testing.T, where, expr string, known map[string]bool) []string {
	t.Helper()
	names, err := selectors(expr)
	if err != nil {
		t.Errorf("%s: %v\n  %s", where, err, expr)
		return nil
	}
	for _, n := range names {
		if n != "up" && !known[n] {
			t.Errorf("%s: metric %q is not exposed by Herd\n  %s", where, n, expr)
		}
	}
	return names
}

func TestAlertRulesUseLiveMetrics(t *testing.T) {
	l := liveMetrics(t)
	t.Logf("%d metric names from the live server; only described (no series yet): %v", len(l.names), l.described)
	rules := loadRules(t)
	seen := map[string]bool{}
	for _, r := range rules {
		where := alertsFile + ": " + r.Alert
		if r.Alert == "" {
			t.Errorf("%s: a rule that is no alert (record %q)", alertsFile, r.Record)
			continue
		}
		if seen[r.Alert] {
			t.Errorf("%s: alert defined twice", where)
		}
		seen[r.Alert] = true
		checkExpr(t, where, r.Expr, l.names)
		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: severity %q, want critical or warning", where, s)
		}
		for _, a := range []string{"summary", "description", "runbook"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s annotation", where, a)
			}
		}
	}
	for _, a := range wantAlerts {
		if !seen[a] {
			t.Errorf("%s: no alert %s", alertsFile, a)
		}
	}
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	GridPos    struct{ H, W, X, Y int }
	Targets    []struct {
		Expr       string      `json:"expr"`
		RefID      string      `json:"refId"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// allPanels flattens rows.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob(grafanaDir + "/*.json")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]dashboard{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		dec := json.NewDecoder(bytes.NewReader(b))
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = d
	}
	return out
}

// grafanaVar matches $name, ${name} and ${name:format}.
var grafanaVar = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)

// substitute replaces Grafana's variables with plain values PromQL accepts:
// durations for the interval variables, a label value for the others.
func substitute(expr string) string {
	return grafanaVar.ReplaceAllStringFunc(expr, func(v string) string {
		m := grafanaVar.FindStringSubmatch(v)
		name := m[1] + m[2]
		switch name {
		case "__rate_interval", "__interval", "__range":
			return "5m"
		case "__interval_ms", "__range_ms", "__range_s":
			return "300"
		default:
			return "x"
		}
	})
}

// labelValues matches label_values(selector, label).
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

var wantDashboards = map[string][]string{
	"herd-overview.json": {"herd_host_admin_status", "herd_host_maintenance_state", "herd_host_health",
		"herd_cluster_failover_capacity_hosts", "herd_cluster_failover_capacity_min_hosts", "herd_raft_leader", "herd_vms", "herd_hosts"},
	"herd-maintenance.json": {"herd_evacuation_vms_remaining", "herd_migrations_total", "herd_migration_duration_seconds_bucket",
		"herd_operations", "herd_host_maintenance_state", "herd_rollouts", "herd_rollout_hosts", "herd_rollout_seconds_since_progress",
		"herd_rollout_step_duration_seconds_bucket", "herd_rollout_hook_runs_total"},
	"herd-recovery.json": {"herd_host_health", "herd_host_fencing_failed", "herd_recovery_storm", "herd_fencing_attempts_total",
		"herd_recovery_vms", "herd_recovery_vm_recreations_total", "herd_recovery_duration_seconds_bucket", "herd_recoveries_total",
		"herd_agent_leases", "herd_agent_lease_renewals_total"},
	"herd-balance.json": {"herd_balance_imbalance_ratio", "herd_balance_recommended_moves", "herd_balance_moves_total"},
	"herd-control-plane.json": {"herd_raft_state", "herd_raft_leader", "herd_raft_commit_index", "herd_raft_applied_index",
		"herd_raft_last_contact_seconds", "herd_api_requests_total", "herd_api_request_duration_seconds_bucket",
		"herd_inventory_sync_duration_seconds_bucket", "herd_policy_version", "herd_policy_drift", "herd_policy_reloads_total", "herd_gossip_probe_failures_total", "herd_gossip_probe_rtt_seconds_bucket"},
}

func TestDashboardsUseLiveMetrics(t *testing.T) {
	l := liveMetrics(t)
	dashes := loadDashboards(t)
	if len(dashes) != len(wantDashboards) {
		t.Errorf("%s holds %d dashboards, want %d", grafanaDir, len(dashes), len(wantDashboards))
	}
	for file, want := range wantDashboards {
		d, ok := dashes[file]
		if !ok {
			t.Errorf("%s: no dashboard %s", grafanaDir, file)
			continue
		}
		used := map[string]bool{}
		for _, p := range allPanels(d.Panels) {
			for _, tg := range p.Targets {
				where := fmt.Sprintf("%s: panel %q target %s", file, p.Title, tg.RefID)
				for _, n := range checkExpr(t, where, substitute(tg.Expr), l.names) {
					used[n] = true
				}
			}
		}
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			m := labelValues.FindStringSubmatch(v.Definition)
			if m == nil {
				t.Errorf("%s: variable %s: query %q is no label_values(metric, label)", file, v.Name, v.Definition)
				continue
			}
			checkExpr(t, file+": variable "+v.Name, substitute(m[1]), l.names)
		}
		for _, n := range want {
			if !used[n] {
				t.Errorf("%s: no panel shows %s", file, n)
			}
		}
	}
}

// TestDashboardsImportable checks what Grafana 10 needs to import a
// dashboard and let the user pick the Prometheus data source.
func TestDashboardsImportable(t *testing.T) {
	uids := map[string]string{}
	for file, d := range loadDashboards(t) {
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: uid %q, title %q", file, d.UID, d.Title)
		}
		if other, ok := uids[d.UID]; ok {
			t.Errorf("%s: uid %q also used by %s", file, d.UID, other)
		}
		uids[d.UID] = file
		if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
			t.Errorf("%s: schemaVersion %d, want one of Grafana 10 (about 39)", file, d.SchemaVersion)
		}
		hasDS := false
		for _, v := range d.Templating.List {
			switch v.Type {
			case "datasource":
				var q string
				json.Unmarshal(v.Query, &q)
				hasDS = hasDS || (v.Name == "datasource" && q == "prometheus")
			case "query":
				if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
					t.Errorf("%s: variable %s does not use ${datasource}: %+v", file, v.Name, v.Datasource)
				}
			}
		}
		if !hasDS {
			t.Errorf("%s: no variable \"datasource\" of type datasource for prometheus", file)
		}
		ids := map[int]bool{}
		for _, p := range allPanels(d.Panels) {
			where := fmt.Sprintf("%s: panel %d %q", file, p.ID, p.Title)
			if ids[p.ID] || p.ID == 0 {
				t.Errorf("%s: id missing or used twice", where)
			}
			ids[p.ID] = true
			if g := p.GridPos; g.W < 1 || g.H < 1 || g.X < 0 || g.X+g.W > 24 {
				t.Errorf("%s: gridPos %+v", where, g)
			}
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
				t.Errorf("%s: datasource %+v, want prometheus ${datasource}", where, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no targets", where)
			}
			for _, tg := range p.Targets {
				if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
					t.Errorf("%s target %s: datasource %+v, want ${datasource}", where, tg.RefID, tg.Datasource)
				}
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s target %s: no expr", where, tg.RefID)
				}
			}
		}
	}
}

// promtool finds promtool, installing the Debian package prometheus as root.
func promtool(t *testing.T) string {
	t.Helper()
	return testutil.NeedProgram(t, "promtool", "prometheus")
}

func runPromtool(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = promDir
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestPromtoolCheckAndTestRules(t *testing.T) {
	for _, args := range [][]string{
		{"check", "rules", "herd-alerts.yml"},
		{"test", "rules", "herd-alerts.test.yml"},
		{"check", "config", "prometheus.yml"},
	} {
		out, err := runPromtool(t, "", args...)
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		} else {
			t.Logf("promtool %s:\n%s", strings.Join(args, " "), strings.TrimSpace(out))
		}
	}
}

// TestAlertUnitTestsCoverEveryAlert: the unit tests hold, for every alert, a
// case where it fires and one where it must not.
func TestAlertUnitTestsCoverEveryAlert(t *testing.T) {
	b, err := os.ReadFile(alertTests)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []struct {
					ExpLabels map[string]string `yaml:"exp_labels"`
				} `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", alertTests, err)
	}
	if len(f.RuleFiles) != 1 || f.RuleFiles[0] != filepath.Base(alertsFile) {
		t.Errorf("%s: rule_files %v, want [%s]", alertTests, f.RuleFiles, filepath.Base(alertsFile))
	}
	fires, silent := map[string]int{}, map[string]int{}
	for _, tc := range f.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) == 0 {
				silent[a.Alertname]++
				continue
			}
			fires[a.Alertname]++
			for _, e := range a.ExpAlerts {
				if e.ExpLabels["severity"] == "" {
					t.Errorf("%s: %s: an expected alert without its severity label", alertTests, a.Alertname)
				}
			}
		}
	}
	for _, r := range loadRules(t) {
		if fires[r.Alert] == 0 || silent[r.Alert] == 0 {
			t.Errorf("%s: %s has %d firing and %d not-firing cases; want at least one of each",
				alertTests, r.Alert, fires[r.Alert], silent[r.Alert])
		}
	}
}

// TestPromtoolLintMetrics runs promtool's linter over a live /metrics.
func TestPromtoolLintMetrics(t *testing.T) {
	l := liveMetrics(t)
	out, err := runPromtool(t, l.text, "check", "metrics")
	if err != nil {
		var complaints []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				complaints = append(complaints, line)
			}
		}
		t.Fatalf("promtool check metrics on a dev server's /metrics: %v; %d complaints:\n%s",
			err, len(complaints), strings.Join(complaints, "\n"))
	}
	if strings.TrimSpace(out) != "" {
		t.Errorf("promtool check metrics printed:\n%s", out)
	}
}
