// Package amtest runs a real Alertmanager (the Debian package
// prometheus-alertmanager) on loopback for tests, with its own port and
// data directory. Only tests import it.
package amtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-project/herd/internal/testutil"
)

// AM is one running Alertmanager.
type AM struct {
	t    testing.TB
	bin  string
	dir  string
	Addr string // host:port
	URL  string // http://host:port

	mu  sync.Mutex
	cmd *exec.Cmd
}

// DefaultConfig routes everything to a receiver that sends nowhere.
const DefaultConfig = `route:
  receiver: nowhere
  group_wait: 50ms
  group_interval: 1s
receivers:
  - name: nowhere
`

// Start runs Alertmanager with config (DefaultConfig when empty) and waits
// until it is ready; it is stopped when the test ends.
func Start(t testing.TB, config string) *AM {
	t.Helper()
	bin := testutil.NeedProgram(t, "prometheus-alertmanager", "prometheus-alertmanager")
	if config == "" {
		config = DefaultConfig
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "alertmanager.yml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testutil.FreePort(t)
	a := &AM{t: t, bin: bin, dir: dir, Addr: addr, URL: "http://" + addr}
	a.Restart()
	t.Cleanup(a.Stop)
	return a
}

// Restart starts Alertmanager again (after Stop) on the same port and data.
func (a *AM) Restart() {
	a.t.Helper()
	a.mu.Lock()
	cmd := exec.Command(a.bin, "--config.file="+filepath.Join(a.dir, "alertmanager.yml"), "--storage.path="+filepath.Join(a.dir, "data"),
		"--web.listen-address="+a.Addr, "--cluster.listen-address=", "--log.level=warn")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		a.mu.Unlock()
		a.t.Fatalf("start alertmanager: %v", err)
	}
	a.cmd = cmd
	a.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(a.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.Stop()
	a.t.Fatalf("alertmanager on %s not ready after 20s:\n%s", a.Addr, out.String())
}

// Stop ends Alertmanager (its data stays for Restart).
func (a *AM) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-done
	}
	a.cmd = nil
}

// Alert is one alert as posted to and read from API v2.
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	StartsAt    time.Time         `json:"startsAt,omitzero"`
	EndsAt      time.Time         `json:"endsAt,omitzero"`
	Status      *struct {
		State       string   `json:"state"`
		SilencedBy  []string `json:"silencedBy"`
		InhibitedBy []string `json:"inhibitedBy"`
	} `json:"status,omitempty"`
}

// PostAlerts sends alerts to Alertmanager as Prometheus does.
func (a *AM) PostAlerts(alerts ...Alert) error {
	b, err := json.Marshal(alerts)
	if err != nil {
		return err
	}
	resp, err := http.Post(a.URL+"/api/v2/alerts", "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("post alerts: %s", resp.Status)
	}
	return nil
}

// Alerts lists the alerts Alertmanager holds, silenced ones included.
func (a *AM) Alerts() ([]Alert, error) {
	var out []Alert
	return out, a.get("/api/v2/alerts", &out)
}

// Silence is a silence as API v2 reads it.
type Silence struct {
	ID       string `json:"id"`
	Matchers []struct {
		Name    string `json:"name"`
		Value   string `json:"value"`
		IsRegex bool   `json:"isRegex"`
		IsEqual *bool  `json:"isEqual"`
	} `json:"matchers"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	CreatedBy string    `json:"createdBy"`
	Comment   string    `json:"comment"`
	Status    struct {
		State string `json:"state"`
	} `json:"status"`
}

// Silences lists every silence Alertmanager holds.
func (a *AM) Silences() ([]Silence, error) {
	var out []Silence
	return out, a.get("/api/v2/silences", &out)
}

// ActiveSilences are the active silences whose comment contains text.
func (a *AM) ActiveSilences(text string) []Silence {
	all, err := a.Silences()
	if err != nil {
		return nil
	}
	var out []Silence
	for _, s := range all {
		if s.Status.State == "active" && strings.Contains(s.Comment, text) {
			out = append(out, s)
		}
	}
	return out
}

// AlertState returns the state (active, suppressed, unprocessed) of the
// alert whose labels include all of match, or "" when none is held.
func (a *AM) AlertState(match map[string]string) string {
	all, err := a.Alerts()
	if err != nil {
		return ""
	}
outer:
	for _, al := range all {
		for k, v := range match {
			if al.Labels[k] != v {
				continue outer
			}
		}
		if al.Status != nil {
			return al.Status.State
		}
	}
	return ""
}

func (a *AM) get(path string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
