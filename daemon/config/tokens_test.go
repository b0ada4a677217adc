package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-project/herd/internal/testutil"
)

const adminToken = testutil.AdminToken

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
			_, err := ParseServer("herd.yaml", []byte(tt.edit(base)))
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
	_, err := ParseServer("herd.yaml", []byte(text))
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
