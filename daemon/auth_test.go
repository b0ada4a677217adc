package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
)

// Test tokens: one per role, and the servers' own.
const (
	adminToken  = "admin-secret-0123456789abcdef"
	opToken     = "operate-secret-0123456789abcd"
	readToken   = "read-secret-0123456789abcdef0"
	serverToken = "server-secret-0123456789abcdef"
)

// writeTokens writes a tokens file (alice: admin by file, ci: operate by
// digest, grafana: read by file) and a server token file.
func writeTokens(t testing.TB) (tokensFile, serverTokenFile string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sum := sha256.Sum256([]byte(opToken))
	tokensFile = write("tokens.yaml", "tokens:\n"+
		"  - name: alice\n    role: admin\n    token_file: "+write("alice.token", adminToken+"\n")+"\n"+
		"  - name: ci\n    role: operate\n    token_sha256: "+hex.EncodeToString(sum[:])+"\n"+
		"  - name: grafana\n    role: read\n    token_file: "+write("grafana.token", readToken)+"\n")
	return tokensFile, write("server.token", serverToken+"\n")
}

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
func startAuthDev(t *testing.T, edit func(*Config)) (*DevServer, *syncBuffer) {
	t.Helper()
	tokens, server := writeTokens(t)
	logs := &syncBuffer{}
	opts := testOptions(t)
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dev, err := NewDevServer(DevOptions{Hosts: 2, VMs: 2, APIListen: "127.0.0.1:0", RaftListen: "127.0.0.1:0",
		Configure: func(c *Config) {
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
	ev, err := admin.Events(context.Background(), api.EventQuery{Host: h, Limit: 1})
	if err != nil || len(ev.Events) != 1 || ev.Events[0].Actor != "token:ci" {
		t.Fatalf("status event actor: %+v %v", ev, err)
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
	dev, _ := startAuthDev(t, func(c *Config) { c.API.MetricsOpen = true })
	if code, _, _ := send(t, "GET", dev.APIAddr()+"/metrics", "", ""); code != 200 {
		t.Fatalf("metrics_open: /metrics answered %d without a token", code)
	}
	if code, _, _ := send(t, "GET", dev.APIAddr()+"/v1/hosts", "", ""); code != 401 {
		t.Fatalf("metrics_open opened /v1 too: %d", code)
	}
}

func TestTokensFileErrors(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short.token")
	os.WriteFile(short, []byte("abc\n"), 0o600)
	blank := filepath.Join(dir, "blank.token")
	os.WriteFile(blank, []byte("has a blank inside it\n"), 0o600)
	good := filepath.Join(dir, "good.token")
	os.WriteFile(good, []byte(adminToken), 0o600)
	sum := sha256.Sum256([]byte(adminToken))
	digest := hex.EncodeToString(sum[:])
	tests := []struct{ name, text, want string }{
		{"empty", "tokens: []\n", "tokens.yaml:1:9: tokens: must list at least one token"},
		{"unknown key", "tokens:\n  - name: a\n    role: read\n    token: x\n", `tokens.yaml:4:5: tokens[0].token: unknown field "token"`},
		{"bad role", "tokens:\n  - name: a\n    role: root\n    token_file: " + good + "\n", `tokens.yaml:3:11: tokens[0].role: "root" is not one of read, operate, admin`},
		{"bad name", "tokens:\n  - name: 'a b'\n    role: read\n    token_file: " + good + "\n", `tokens.yaml:2:11: tokens[0].name: "a b" is not a valid token name`},
		{"reserved name", "tokens:\n  - name: server\n    role: read\n    token_file: " + good + "\n", `tokens.yaml:2:11: tokens[0].name: "server" is used twice (or is reserved)`},
		{"no secret", "tokens:\n  - name: a\n    role: read\n", "tokens.yaml:2:5: tokens[0]: set token_sha256 or token_file"},
		{"both secrets", "tokens:\n  - name: a\n    role: read\n    token_file: " + good + "\n    token_sha256: " + digest + "\n", "tokens.yaml:4:17: tokens[0].token_file: set token_sha256 or token_file, not both"},
		{"bad digest", "tokens:\n  - name: a\n    role: read\n    token_sha256: abc\n", "tokens.yaml:4:19: tokens[0].token_sha256: must be 64 lower-case hex digits"},
		{"short token", "tokens:\n  - name: a\n    role: read\n    token_file: " + short + "\n", "tokens.yaml:4:17: tokens[0].token_file: " + short + ": the token is shorter than 16 bytes"},
		{"blank in token", "tokens:\n  - name: a\n    role: read\n    token_file: " + blank + "\n", "without blanks"},
		{"missing token file", "tokens:\n  - name: a\n    role: read\n    token_file: /nonexistent/t\n", "tokens.yaml:4:17: tokens[0].token_file: cannot read:"},
		{"same token twice", "tokens:\n  - name: a\n    role: read\n    token_file: " + good + "\n  - name: b\n    role: admin\n    token_sha256: " + digest + "\n", "tokens.yaml:7:19: tokens[1].token_sha256: the same token is listed twice"},
		{"duplicate name", "tokens:\n  - name: a\n    role: read\n    token_file: " + good + "\n  - name: a\n    role: read\n    token_sha256: " + strings.Repeat("0", 64) + "\n", `tokens.yaml:5:11: tokens[1].name: "a" is used twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "tokens.yaml")
			os.WriteFile(p, []byte(tt.text), 0o600)
			_, err := loadTokens(p, "")
			if err == nil {
				t.Fatal("bad tokens file accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error\n%v\ndoes not contain\n%s", err, tt.want)
			}
			if strings.Contains(err.Error(), adminToken) || strings.Contains(err.Error(), "has a blank inside") {
				t.Fatalf("the error shows a secret: %v", err)
			}
		})
	}
}

func TestConfigSecurityErrors(t *testing.T) {
	base := configText(t)
	tls := "tls:\n  cert_file: /nonexistent/c.crt\n"
	tests := []struct {
		name string
		edit func(string) string
		want []string
	}{
		{"tokens required", func(s string) string { return cutLine(s, "  tokens_file:") }, []string{"api.tokens_file: must be set"}},
		{"server token required with peers", func(s string) string { return cutLine(s, "  server_token_file:") },
			[]string{"api.server_token_file: must be set when servers call each other"}},
		{"relative tokens file", func(s string) string {
			return strings.Replace(s, "tokens_file: /", "tokens_file: ", 1)
		}, []string{"api.tokens_file: \"", "must be an absolute path"}},
		{"write rate", func(s string) string { return strings.Replace(s, "api:\n", "api:\n  write_rate: -1\n", 1) }, []string{"herd.yaml:4:15: api.write_rate: -1 is out of range"}},
		{"partial tls", func(s string) string { return s + tls }, []string{"tls.key_file: must be set", "tls.ca_file: must be set"}},
		{"verify clients alone", func(s string) string { return s + "tls:\n  verify_clients: true\n" }, []string{"tls.verify_clients: needs tls.cert_file"}},
		{"unreadable tls files", func(s string) string {
			return s + tls + "  key_file: /nonexistent/c.key\n  ca_file: /nonexistent/ca.crt\n"
		}, []string{"tls.cert_file: load certificate and key", "api.advertise: \"http://10.0.0.1:7420\" must be an https URL", "raft.join[1]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("herd.yaml", []byte(tt.edit(base)))
			if err == nil {
				t.Fatal("bad config accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
				}
			}
		})
	}
	// A bad tokens file is reported with its own file and line.
	bad := filepath.Join(t.TempDir(), "tokens.yaml")
	os.WriteFile(bad, []byte("tokens:\n  - name: a\n    role: superuser\n    token_sha256: "+strings.Repeat("a", 64)+"\n"), 0o600)
	text := strings.Replace(base, "tokens_file: /", "tokens_file: "+bad+"\n  x_unused_: /", 1)
	text = cutLine(text, "  x_unused_:")
	_, err := ParseConfig("herd.yaml", []byte(text))
	var ye interface{ Error() string }
	if err == nil || !errors.As(err, &ye) || !strings.Contains(err.Error(), bad+":3:11: tokens[0].role") {
		t.Fatalf("bad tokens file: %v", err)
	}
}

// cutLine removes the line that starts with prefix.
func cutLine(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
