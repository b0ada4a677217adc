package daemon

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/internal/testutil"
)

// Test tokens: one per role, and the servers' own.
const (
	adminToken  = testutil.AdminToken
	opToken     = testutil.OpToken
	readToken   = testutil.ReadToken
	serverToken = testutil.ServerToken
)

// syncBuffer is a log sink tests can read while servers write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startAuthDev starts a dev server with API tokens, logging at debug level
// into the returned buffer.
func startAuthDev(t *testing.T, edit func(*config.Server)) (*DevServer, *syncBuffer) {
	t.Helper()
	tokens, server := testutil.WriteTokens(t)
	logs := &syncBuffer{}
	opts := testOptions(t)
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dev, err := NewDevServer(DevOptions{Hosts: 2, VMs: 2, APIListen: "127.0.0.1:0", RaftListen: "127.0.0.1:0",
		Configure: func(c *config.Server) {
			c.API.TokensFile, c.API.ServerTokenFile = tokens, server
			if edit != nil {
				edit(c)
			}
		}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		dev.Shutdown(ctx)
	})
	return dev, logs
}

func client(t *testing.T, addr, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(addr, token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// send makes a raw request and returns the code, headers and body.
func send(t *testing.T, method, url, token, body string) (int, http.Header, string) {
	t.Helper()
	return sendHeaders(t, method, url, token, body, nil)
}

// sendHeaders is send with extra request headers.
func sendHeaders(t *testing.T, method, url, token, body string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestAPITokensAndRoles(t *testing.T) {
	dev, logs := startAuthDev(t, nil)
	base := dev.APIAddr()
	admin := client(t, base, adminToken)
	hosts := waitInventory(t, admin, 2, 2)
	h := hosts[0].Name
	status := `{"status":"NOT_ACCEPTING","reason":"auth test"}`
	tests := []struct {
		name, method, path, token, body string
		code                            int
	}{
		{"no token", "GET", "/v1/hosts", "", "", 401},
		{"unknown token", "GET", "/v1/hosts", "not-a-real-token-at-all", "", 401},
		{"not bearer", "GET", "/v1/hosts", "", "", 401},
		{"read may read", "GET", "/v1/hosts", readToken, "", 200},
		{"read may not write", "PUT", "/v1/hosts/" + h + "/status", readToken, status, 403},
		{"read may not cancel", "POST", "/v1/operations/x/cancel", readToken, "{}", 403},
		{"read may not append events", "POST", "/v1/events", readToken, `{"type":"note","message":"x"}`, 403},
		{"read may not post alerts", "POST", "/v1/alerts/webhook", readToken, `{"version":"4","alerts":[]}`, 403},
		{"operate may post alerts (none mapped here)", "POST", "/v1/alerts/webhook", opToken, `{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"X"}}]}`, 409},
		{"read may precheck", "POST", "/v1/hosts/" + h + "/maintenance/precheck", readToken, `{"status":"enable"}`, 200},
		{"operate may not put policy", "PUT", "/v1/policy", opToken, "apiVersion: herd/v1\nkind: Policy\n", 403},
		{"operate may not join", "POST", "/v1/cluster/join", opToken, `{}`, 403},
		{"operate may not leave", "POST", "/v1/cluster/leave", opToken, "{}", 403},
		{"operate may not remove servers", "POST", "/v1/cluster/remove", opToken, `{"id":"dev"}`, 403},
		{"the only server cannot leave", "POST", "/v1/cluster/leave", adminToken, "{}", 409},
		{"operate may write", "PUT", "/v1/hosts/" + h + "/status", opToken, status, 200},
		{"healthz is open", "GET", "/healthz", "", "", 200},
		{"readyz is open", "GET", "/readyz", "", "", 200},
		{"metrics need a token", "GET", "/metrics", "", "", 401},
		{"metrics with read", "GET", "/metrics", readToken, "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, base+tt.path, strings.NewReader(tt.body))
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			if tt.name == "not bearer" {
				req.Header.Set("Authorization", "Basic "+adminToken)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.code, b)
			}
			if tt.code == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer: %q", resp.Header.Get("WWW-Authenticate"))
			}
			if tt.code == 403 && !strings.Contains(string(b), "needs ") {
				t.Errorf("403 does not say which role is needed: %s", b)
			}
		})
	}

	// The event names the token's holder, not an address.
	evs := queryEvents(t, admin, api.EventQuery{Host: h})
	if e, ok := lastOfType(evs, "host.status"); !ok || e.Actor != "token:ci" {
		t.Fatalf("status event actor: %+v", evs)
	}
	// Admin may change the policy; its event names alice.
	cur, _, err := admin.Policy(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(cur, []byte("per_source: 2"), []byte("per_source: 3"), 1)
	if bytes.Equal(edited, cur) {
		t.Fatalf("policy without per_source: 2:\n%s", cur)
	}
	if _, err := admin.ApplyPolicy(context.Background(), edited, "auth test"); err != nil {
		t.Fatalf("admin policy apply: %v", err)
	}
	all, _ := admin.Events(context.Background(), api.EventQuery{})
	found := false
	for _, e := range all.Events {
		found = found || e.Type == "policy.applied" && e.Actor == "token:alice"
	}
	if !found {
		t.Error("no policy.applied event by token:alice")
	}

	// No secret shows up anywhere a person or a scraper can see.
	_, _, metrics := send(t, "GET", base+"/metrics", readToken, "")
	_, _, events := send(t, "GET", base+"/v1/events", readToken, "")
	_, _, refused := send(t, "GET", base+"/v1/hosts", "wrong-"+adminToken, "")
	for where, text := range map[string]string{"metrics": metrics, "events": events, "error": refused, "logs": logs.String()} {
		for _, secret := range []string{adminToken, opToken, readToken, serverToken} {
			if strings.Contains(text, secret) {
				t.Errorf("a token appears in %s", where)
			}
		}
	}
}

func TestMetricsOpen(t *testing.T) {
	dev, _ := startAuthDev(t, func(c *config.Server) { c.API.MetricsOpen = true })
	if code, _, _ := send(t, "GET", dev.APIAddr()+"/metrics", "", ""); code != 200 {
		t.Fatalf("metrics_open: /metrics answered %d without a token", code)
	}
	if code, _, _ := send(t, "GET", dev.APIAddr()+"/v1/hosts", "", ""); code != 401 {
		t.Fatalf("metrics_open opened /v1 too: %d", code)
	}
}
