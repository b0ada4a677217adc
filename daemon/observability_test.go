package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

// forDuration matches the `for:` of a rule.
var forDuration = regexp.MustCompile(`(?m)^(\s+for:\s*)(\S+)\s*$`)

// shortRules is the alert rules file with every `for:` cut to 1s, for a
// test that cannot wait minutes.
func shortRules(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../configs/prometheus/herd-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(forDuration.FindAll(b, -1)) < 10 {
		t.Fatalf("herd-alerts.yml: found only %d `for:` lines to shorten", len(forDuration.FindAll(b, -1)))
	}
	out := forDuration.ReplaceAllString(string(b), "${1}1s")
	if !strings.Contains(out, "alert: HerdMaintenanceError") {
		t.Fatal("herd-alerts.yml has no HerdMaintenanceError")
	}
	return out
}

// startProcess runs a program in its own process group, its output in a
// file of dir that the test prints when it fails; cleanup kills the group.
func startProcess(t *testing.T, dir, name, bin string, args ...string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s output:\n%s", name, tail(string(b), 40))
		}
	})
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func getJSON(u string, v any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// amAlert is an alert as Alertmanager's API v2 lists it.
type amAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

func amAlerts(t *testing.T, am string) []amAlert {
	t.Helper()
	var alerts []amAlert
	if err := getJSON("http://"+am+"/api/v2/alerts", &alerts); err != nil {
		t.Logf("alertmanager: %v", err)
		return nil
	}
	return alerts
}

// TestObservabilityMaintenanceErrorAlert runs the alert rules on a real
// Prometheus scraping a dev server, with a real Alertmanager: a host whose
// evacuation fails ends in maintenance error, and HerdMaintenanceError
// reaches Alertmanager with the host's name.
func TestObservabilityMaintenanceErrorAlert(t *testing.T) {
	start := time.Now()
	prom := needProgram(t, "prometheus", "prometheus")
	amBin := needProgram(t, "prometheus-alertmanager", "prometheus-alertmanager")
	dev, c := startDevWith(t, 3, 6, nil, func(p *policy.Document) { p.Maintenance.RetryBackoff = time.Second })
	ctx := context.Background()
	dir := t.TempDir()

	am := testutil.FreePort(t)
	amCfg := "route:\n  receiver: \"null\"\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: \"null\"\n"
	os.WriteFile(filepath.Join(dir, "alertmanager.yml"), []byte(amCfg), 0o644)
	startProcess(t, dir, "alertmanager", amBin, "--config.file="+filepath.Join(dir, "alertmanager.yml"),
		"--storage.path="+filepath.Join(dir, "am-data"), "--web.listen-address="+am, "--cluster.listen-address=")

	os.WriteFile(filepath.Join(dir, "herd-alerts.yml"), []byte(shortRules(t)), 0o644)
	target := strings.TrimPrefix(dev.APIAddr(), "http://")
	promAddr := testutil.FreePort(t)
	promCfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - herd-alerts.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: [%q]
scrape_configs:
  - job_name: herd
    static_configs:
      - targets: [%q]
`, am, target)
	os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(promCfg), 0o644)
	startProcess(t, dir, "prometheus", prom, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "prom-data"), "--web.listen-address="+promAddr)

	// Prometheus scrapes the server and evaluates the rules.
	testutil.WaitFor(t, 20*time.Second, "Prometheus to scrape herd_hosts from the dev server", func() bool {
		var r struct {
			Data struct {
				Result []struct {
					Value []any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		err := getJSON("http://"+promAddr+"/api/v1/query?query="+url.QueryEscape(`herd_hosts{job="herd"}`), &r)
		return err == nil && len(r.Data.Result) == 1 && r.Data.Result[0].Value[1] == "3"
	})
	testutil.WaitFor(t, 10*time.Second, "Alertmanager to answer", func() bool {
		var s map[string]any
		return getJSON("http://"+am+"/api/v2/status", &s) == nil
	})
	for _, a := range amAlerts(t, am) {
		if a.Labels["alertname"] == "HerdMaintenanceError" {
			t.Fatalf("HerdMaintenanceError before any maintenance: %+v", a)
		}
	}

	// Every migration fails: the evacuation ends in maintenance error.
	hosts, err := c.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src := hosts[0]
	for _, h := range hosts {
		if h.RunningVMs > src.RunningVMs {
			src = h
		}
	}
	if src.RunningVMs == 0 {
		t.Fatalf("no host runs a VM: %+v", hosts)
	}
	dev.Sim.InjectFault("RelocateVM_Task", "*", "simulated vMotion failure")
	ref, err := c.Maintenance(ctx, src.Name, api.MaintenanceRequest{Status: "enable", Migrate: "active-only"})
	if err != nil {
		t.Fatal(err)
	}
	if op := waitOp(t, c, ref.Operation, 20*time.Second); op.State != api.OpFailed {
		t.Fatalf("evacuation with every migration failing: %+v", *op)
	}
	if h, _ := c.Host(ctx, src.Name); h.Maintenance != api.MaintenanceError {
		t.Fatalf("host after the failed evacuation: %+v", h)
	}
	failedAt := time.Now()

	var got amAlert
	testutil.WaitFor(t, 20*time.Second, "HerdMaintenanceError for "+src.Name+" at Alertmanager", func() bool {
		for _, a := range amAlerts(t, am) {
			if a.Labels["alertname"] == "HerdMaintenanceError" && a.Labels["host"] == src.Name {
				got = a
				return true
			}
		}
		time.Sleep(200 * time.Millisecond)
		return false
	})
	if got.Labels["severity"] != "warning" || got.Status.State != "active" ||
		!strings.Contains(got.Annotations["summary"], src.Name) || got.Annotations["runbook"] == "" {
		t.Errorf("alert at Alertmanager: %+v", got)
	}
	var others []string
	for _, a := range amAlerts(t, am) {
		if a.Labels["alertname"] != "HerdMaintenanceError" {
			others = append(others, a.Labels["alertname"])
		}
		if a.Labels["alertname"] == "HerdMaintenanceError" && a.Labels["host"] != src.Name {
			t.Errorf("HerdMaintenanceError for a host not in maintenance error: %+v", a.Labels)
		}
	}
	t.Logf("HerdMaintenanceError for %s at Alertmanager %s after the evacuation failed (test %s); other alerts: %v",
		src.Name, time.Since(failedAt).Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond), others)
}
