package policy

import (
	"os"
	"strings"
	"testing"

	"github.com/herd-project/herd/policy/yamlfile"
)

// TestCanonicalYAML pins the canonical encoding of the default policy: what
// GET /v1/policy shows before any policy is applied.
func TestCanonicalYAML(t *testing.T) {
	y, err := Default().YAML()
	if err != nil {
		t.Fatal(err)
	}
	want := `apiVersion: herd/v1
kind: Policy
host_groups: []
vm_groups: []
placement:
  memory_reserve: 0
  cpu_overcommit: 0
  strategy: spread
rules: []
disruption_budgets: []
maintenance:
  per_source: 2
  per_target: 2
  cluster: 8
  attempts: 3
  migration_timeout: 30m
  shutdown_timeout: 5m
  no_progress_timeout: 1h
  retry_backoff: 5s
  migrate_back_on_exit: false
balancing:
  mode: "off"
  strategy: evenly-distributed
  metric: memory
  threshold: 0.1
  min_gain: 0.01
  max_moves: 10
  interval: 5m
  hold: 1h
  target_utilisation: 0.8
failover:
  min_host_failures: 0
health:
  suspect_after: 2s
  dead_after: 10s
  alive_after: 10s
recovery:
  automatic: true
  storm_threshold: 0.5
  lease_ttl: 10s
  lease_margin: 1s
  retry_backoff: 5s
  max_backoff: 2m
  concurrency: 8
metric_sources: {}
windows: []
rollout: {}
`
	if string(y) != want {
		t.Errorf("Default().YAML() =\n%s\nwant\n%s", y, want)
	}
}

// TestHash checks that the hash is stable, blind to comments, key order and
// defaults left out, and changes with content.
func TestHash(t *testing.T) {
	hash := func(y string) string {
		t.Helper()
		d, err := Parse("p.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return d.Hash()
	}
	bare := hash(header)
	if len(bare) != 64 || strings.Trim(bare, "0123456789abcdef") != "" {
		t.Fatalf("Hash = %q, want 64 hex digits", bare)
	}
	same := []string{
		header,
		"# a comment\nkind: Policy\napiVersion: herd/v1\n",
		header + "maintenance:\n  per_target: 2\n  per_source: 2\n",
		header + "balancing: {interval: 300s, threshold: 0.10}\n",
	}
	for _, y := range same {
		if h := hash(y); h != bare {
			t.Errorf("Hash(%q) = %s, want %s as for the bare policy", y, h, bare)
		}
	}
	if Default().Hash() != bare {
		t.Error("Default().Hash() differs from the bare policy's")
	}
	for _, y := range []string{
		header + "maintenance:\n  per_source: 3\n",
		header + "balancing:\n  interval: 301s\n",
		header + "host_groups:\n  - {name: a, hosts: [h1]}\n",
	} {
		if h := hash(y); h == bare {
			t.Errorf("Hash(%q) did not change", y)
		}
	}
}

// TestExamplePolicy checks the shipped example: it validates, sets every
// section, and its rules place VMs.
func TestExamplePolicy(t *testing.T) {
	data, err := os.ReadFile("../configs/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse("configs/policy.yaml", data)
	if err != nil {
		t.Fatalf("the example policy does not validate:\n%v", err)
	}
	var raw map[string]any
	if _, err := yamlfile.Decode("configs/policy.yaml", data, &raw); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"apiVersion", "kind", "host_groups", "vm_groups", "placement", "rules",
		"disruption_budgets", "maintenance", "balancing", "failover", "metric_sources", "alertmanager"} {
		if raw[key] == nil {
			t.Errorf("the example does not show %s", key)
		}
	}
	types := map[string]bool{}
	for _, r := range d.Rules {
		types[r.Type+" "+r.Enforcement] = true
	}
	if len(types) < 4 {
		t.Errorf("the example shows only %v", types)
	}
}
