package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/internal/testpki"
	"github.com/herd-project/herd/internal/testutil"
)

const goodConfig = `node_name: mgmt-1
data_dir: /var/lib/herd
api:
  listen: 0.0.0.0:7420
  advertise: http://10.0.0.1:7420
  tokens_file: TOKENSFILE
  server_token_file: SERVERTOKEN
raft:
  listen: 0.0.0.0:7421
  advertise: 10.0.0.1:7421
  bootstrap_expect: 3
  join: [10.0.0.2:7420, "http://10.0.0.3:7420"]
drivers:
  - name: vc1
    type: vsphere
    url: https://vcenter.example/sdk
    username: herd@vsphere.local
    password_file: PASSFILE
inventory:
  sync_interval: 30s
log:
  level: debug
`

func writePass(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "vc.pass")
	if err := os.WriteFile(p, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// configText is goodConfig with real secret files.
func configText(t *testing.T) string {
	t.Helper()
	tokens, server := testutil.WriteTokens(t)
	s := strings.ReplaceAll(goodConfig, "PASSFILE", writePass(t))
	s = strings.ReplaceAll(s, "TOKENSFILE", tokens)
	return strings.ReplaceAll(s, "SERVERTOKEN", server)
}

func TestParseConfigGood(t *testing.T) {
	c, err := ParseServer("herd.yaml", []byte(configText(t)))
	if err != nil {
		t.Fatalf("good config refused: %v", err)
	}
	if c.NodeName != "mgmt-1" || c.Raft.BootstrapExpect != 3 || len(c.Raft.Join) != 2 || c.Inventory.SyncInterval != 30*time.Second {
		t.Fatalf("parsed: %+v", c)
	}
	if c.Drivers[0].Password != "s3cret" {
		t.Fatalf("password from file: %q", c.Drivers[0].Password)
	}
	if c.Events.Retention != 20000 || c.Inventory.Timeout != 30*time.Second || c.Log.Format != "text" {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestParseConfigErrors(t *testing.T) {
	base := configText(t)
	pass := base[strings.Index(base, "password_file: ")+len("password_file: "):]
	pass = pass[:strings.Index(pass, "\n")]
	tests := []struct {
		name string
		edit func(string) string
		want []string
	}{
		{"unknown top-level key", func(s string) string { return s + "colour: blue\n" },
			[]string{`herd.yaml:23:1: colour: unknown field "colour"`}},
		{"unknown nested key with suggestion", func(s string) string { return strings.Replace(s, "  bootstrap_expect: 3", "  bootstrapexpect: 3", 1) },
			[]string{`herd.yaml:11:3: raft.bootstrapexpect: unknown field "bootstrapexpect" (did you mean "bootstrap_expect"?)`}},
		{"bad duration", func(s string) string { return strings.Replace(s, "30s", "thirty", 1) },
			[]string{"herd.yaml:20:18: inventory.sync_interval: cannot unmarshal !!str `thirty` into time.Duration"}},
		{"bad type", func(s string) string { return strings.Replace(s, "bootstrap_expect: 3", "bootstrap_expect: three", 1) },
			[]string{"herd.yaml:11:21: raft.bootstrap_expect: cannot unmarshal !!str `three` into int"}},
		{"bad value names field and line", func(s string) string { return strings.Replace(s, "level: debug", "level: loud", 1) },
			[]string{`herd.yaml:22:10: log.level: "loud" is not one of debug, info, warn, error`}},
		{"driver type", func(s string) string { return strings.Replace(s, "type: vsphere", "type: hyperv", 1) },
			[]string{`herd.yaml:15:11: drivers[0].type: unknown driver type "hyperv" (known: vsphere, libvirt)`}},
		{"missing password file", func(s string) string { return strings.Replace(s, pass, "/nonexistent/pass", 1) },
			[]string{`herd.yaml:18:20: drivers[0].password_file: cannot read:`}},
		{"all errors at once", func(s string) string {
			s = strings.Replace(s, "level: debug", "level: loud", 1)
			return strings.Replace(s, "data_dir: /var/lib/herd", "data_dir: relative/dir", 1)
		}, []string{`herd.yaml:2:11: data_dir: "relative/dir" must be an absolute path`, `herd.yaml:22:10: log.level`}},
		{"no way to form a cluster", func(s string) string {
			s = strings.Replace(s, "  bootstrap_expect: 3\n", "", 1)
			return strings.Replace(s, "  join: [10.0.0.2:7420, \"http://10.0.0.3:7420\"]\n", "", 1)
		}, []string{"raft.bootstrap_expect: set bootstrap_expect"}},
		{"syntax error", func(s string) string { return s + "  - : [\n" }, []string{"herd.yaml:"}},
		{"gossip without a keyring", func(s string) string { return s + "gossip:\n  listen: 0.0.0.0:7422\n" },
			[]string{"gossip.keyring_file: must be set: gossip is encrypted outside -dev"}},
		{"unknown gossip profile", func(s string) string { return s + "gossip:\n  listen: 0.0.0.0:7422\n  profile: wan\n" },
			[]string{`herd.yaml:25:12: gossip.profile: "wan" is not a profile: want one of lan, local`}},
		{"gossip join without listen", func(s string) string { return s + "gossip:\n  join: [10.0.0.2:7422]\n" },
			[]string{"gossip.listen: must be set when gossip.join or gossip.keyring_file is"}},
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
}

func TestNormalizeAPIAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":               "http://10.0.0.1:7420",
		"10.0.0.1:9000":          "http://10.0.0.1:9000",
		"https://mgmt.example/":  "https://mgmt.example",
		"http://127.0.0.1:7420/": "http://127.0.0.1:7420",
	} {
		got, err := NormalizeAPIAddr(in)
		if err != nil || got != want {
			t.Errorf("NormalizeAPIAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := NormalizeAPIAddr("ftp://x"); err == nil {
		t.Error("ftp URL accepted")
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	data, err := os.ReadFile("../../configs/herd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tokens, server := testutil.WriteTokens(t)
	text := strings.ReplaceAll(string(data), "/etc/herd/vcenter.password", writePass(t))
	text = strings.ReplaceAll(text, "/etc/herd/tokens.yaml", tokens)
	text = strings.ReplaceAll(text, "/etc/herd/server.token", server)
	f := testpki.NewCA(t, "herd test CA").WriteFiles(t, t.TempDir(), "server")
	text = strings.ReplaceAll(text, "/etc/herd/tls/server.crt", f.Cert)
	text = strings.ReplaceAll(text, "/etc/herd/tls/server.key", f.Key)
	text = strings.ReplaceAll(text, "/etc/herd/tls/ca.crt", f.CA)
	keys := filepath.Join(t.TempDir(), "gossip.keys")
	os.WriteFile(keys, []byte("AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n"), 0o600)
	text = strings.ReplaceAll(text, "/etc/herd/gossip.keys", keys)
	if _, err := ParseServer("configs/herd.yaml", []byte(text)); err != nil {
		t.Fatalf("the shipped example does not validate:\n%v", err)
	}
}
