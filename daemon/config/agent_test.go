package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// agentConfigText is the shipped example with its files made real.
func agentConfigText(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../../configs/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keys, token, ca := filepath.Join(dir, "gossip.keyring"), filepath.Join(dir, "agent.token"), filepath.Join(dir, "ca.pem")
	os.WriteFile(keys, []byte("AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n"), 0o600)
	os.WriteFile(token, []byte("agent-token\n"), 0o600)
	text := strings.ReplaceAll(string(data), "/etc/herd/gossip.keyring", keys)
	text = strings.ReplaceAll(text, "/etc/herd/agent.token", token)
	return strings.ReplaceAll(text, "/etc/herd/tls/ca.pem", ca)
}

func TestExampleAgentConfigIsValid(t *testing.T) {
	c, err := ParseAgent("configs/agent.yaml", []byte(agentConfigText(t)))
	if err != nil {
		t.Fatalf("the shipped example does not validate:\n%v", err)
	}
	if c.Token() != "agent-token" || c.Host != c.NodeName || c.Hypervisor.URI != "qemu:///system" || len(c.Servers) != 3 {
		t.Errorf("parsed: %+v", c)
	}
}

// TestAgentConfigErrors: each broken file gives errors naming
// file:line:column and the field.
func TestAgentConfigErrors(t *testing.T) {
	base := agentConfigText(t)
	for _, tt := range []struct {
		name string
		edit func(string) string
		want []string
	}{
		{"unknown key", func(s string) string { return s + "lease_ttl: 5s\n" }, []string{`agent.yaml:47:1: lease_ttl: unknown field "lease_ttl"`}},
		{"no servers", func(s string) string {
			s = strings.Replace(s, "servers:\n  - https://mgmt-1.example.com:7420\n  - https://mgmt-2.example.com:7420\n  - https://mgmt-3.example.com:7420\n", "", 1)
			return strings.Replace(s, "  join:\n    - mgmt-1.example.com:7422\n    - mgmt-2.example.com:7422\n", "", 1)
		}, []string{"servers: list the servers' API addresses"}},
		{"bad server", func(s string) string { return strings.Replace(s, "https://mgmt-2.example.com:7420", "ftp://x", 1) },
			[]string{"agent.yaml:16:5: servers[1]:"}},
		{"no keyring", func(s string) string {
			return strings.Replace(s, "  keyring_file: ", "  # keyring_file: ", 1)
		}, []string{"gossip.keyring_file: must be set"}},
		{"unknown gossip profile", func(s string) string { return strings.Replace(s, "\n  profile: lan\n", "\n  profile: fast\n", 1) },
			[]string{`agent.yaml:34:12: gossip.profile: "fast" is not a profile: want one of lan, local`}},
		{"bad hypervisor", func(s string) string { return strings.Replace(s, "type: libvirt", "type: xen", 1) },
			[]string{`agent.yaml:38:9: hypervisor.type: unknown hypervisor type "xen"`}},
		{"relative state file", func(s string) string {
			return strings.Replace(s, "state_file: /var/lib/herd-agent/lease.json", "state_file: lease.json", 1)
		}, []string{`state_file: "lease.json" must be an absolute path`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAgent("agent.yaml", []byte(tt.edit(base)))
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
