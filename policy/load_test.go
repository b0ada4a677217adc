package policy

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/policy/yamlfile"
)

// header starts every policy in the tables: their own lines start at 3.
const header = "apiVersion: herd/v1\nkind: Policy\n"

// TestParseErrors parses one broken policy per row and wants exactly the
// errors given, in order, with file:line:column and key path.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string // after header, unless it starts with "apiVersion" or "#"
		want []string
	}{
		{"unknown key", "placement:\n  stratgy: pack\n",
			[]string{`p.yaml:4:3: placement.stratgy: unknown field "stratgy" (did you mean "strategy"?)`}},
		{"unknown section", "balance:\n  mode: off\n",
			[]string{`p.yaml:3:1: balance: unknown field "balance" (known: alertmanager, apiVersion, balancing, disruption_budgets, failover, health, host_groups, kind, maintenance, metric_sources, placement, recovery, rollout, rules, vm_groups, windows)`}},
		{"rollout hook relative command", "rollout:\n  hooks:\n    - name: patch\n      command: [patch-host]\n",
			[]string{`p.yaml:6:16: rollout.hooks[0].command: the program must be an absolute path, got "patch-host"`}},
		{"rollout hook without command", "rollout:\n  hooks:\n    - name: patch\n      timeout: 10s\n",
			[]string{`p.yaml:5:7: rollout.hooks[0].command: missing; the program to run and its arguments, e.g. [/usr/local/sbin/patch-host, "{host}"]`}},
		{"rollout hook names unique", "rollout:\n  hooks:\n    - {name: p, command: [/bin/true]}\n    - {name: p, command: [/bin/true]}\n",
			[]string{`p.yaml:6:14: rollout.hooks[1].name: name "p" is already used by rollout.hooks[0]`}},
		{"health query without prometheus", "health:\n  down_query: up == 0\n",
			[]string{`p.yaml:4:15: health.down_query: reads Prometheus: set metric_sources.prometheus with a url`}},
		{"recovery storm share", "recovery:\n  storm_threshold: 1.5\n",
			[]string{`p.yaml:4:20: recovery.storm_threshold: must be above 0 and at most 1, got 1.5`}},
		{"power fence without agent", "recovery:\n  fencing:\n    - name: ipmi\n      type: power\n",
			[]string{`p.yaml:5:7: recovery.fencing[0].agent: missing; a power method runs a fence agent such as fence_ipmilan or fence_redfish`}},
		{"fence password in the policy", "recovery:\n  fencing:\n    - name: ipmi\n      type: power\n      agent: fence_ipmilan\n      params: {password: x}\n",
			[]string{`p.yaml:8:26: recovery.fencing[0].params.password: a password does not belong in the policy (GET /v1/policy shows it): use secret_files`}},
		{"unknown fence type", "recovery:\n  fencing:\n    - name: x\n      type: stonith\n",
			[]string{`p.yaml:6:13: recovery.fencing[0].type: must be one of power, lease, dev; got "stonith"`}},
		{"relative secret file", "recovery:\n  fencing:\n    - name: ipmi\n      type: power\n      agent: fence_ipmilan\n      secret_files: {password: pw.txt}\n",
			[]string{`p.yaml:8:32: recovery.fencing[0].secret_files.password: must be an absolute path, got "pw.txt"`}},
		{"bad type", "maintenance:\n  per_source: two\n",
			[]string{`p.yaml:4:15: maintenance.per_source: must be a whole number, got "two"`}},
		{"fraction for a whole number", "balancing:\n  max_moves: 2.5\n",
			[]string{`p.yaml:4:14: balancing.max_moves: must be a whole number, got 2.5`}},
		{"list for a mapping", "placement: [spread]\n",
			[]string{`p.yaml:3:12: placement: must be a mapping, got a list`}},
		{"mapping for a list", "rules: {name: a}\n",
			[]string{`p.yaml:3:8: rules: must be a list, got a mapping`}},
		{"bad duration", "maintenance:\n  retry_backoff: 5 seconds\n",
			[]string{`p.yaml:4:18: maintenance.retry_backoff: invalid duration "5 seconds": use a number and a unit, such as 90s, 5m or 1h`}},
		{"duration without unit", "balancing:\n  interval: 300\n",
			[]string{`p.yaml:4:13: balancing.interval: invalid duration 300: a unit is needed, such as 300s or 300m`}},
		{"duration too short", "maintenance:\n  shutdown_timeout: 500ms\n",
			[]string{`p.yaml:4:21: maintenance.shutdown_timeout: must be at least 1s, got 500ms`}},
		{"bad enum", "balancing:\n  mode: auto\n",
			[]string{`p.yaml:4:9: balancing.mode: must be one of off, recommend, automatic; got "auto"`}},
		{"bad enum, close", "balancing:\n  strategy: power-savings\n",
			[]string{`p.yaml:4:13: balancing.strategy: must be one of evenly-distributed, power-saving; got "power-savings" (did you mean "power-saving"?)`}},
		{"explicit zero is not defaulted", "maintenance:\n  cluster: 0\n",
			[]string{`p.yaml:4:12: maintenance.cluster: must be at least 1, got 0`}},
		{"out of range", "placement:\n  memory_reserve: 1\n  cpu_overcommit: -2\nbalancing:\n  threshold: -0.1\n  min_gain: 2\n  max_moves: 0\nfailover:\n  min_host_failures: -1\n",
			[]string{
				`p.yaml:4:19: placement.memory_reserve: must be at least 0 and below 1, got 1`,
				`p.yaml:5:19: placement.cpu_overcommit: must be 0 (no limit) or more, got -2`,
				`p.yaml:7:14: balancing.threshold: must be between 0 and 1, got -0.1`,
				`p.yaml:8:13: balancing.min_gain: must be between 0 and 1, got 2`,
				`p.yaml:9:14: balancing.max_moves: must be at least 1, got 0`,
				`p.yaml:11:22: failover.min_host_failures: must be at least 0, got -1`,
			}},
		{"weight out of range", "vm_groups:\n  - {name: web, pattern: web-*}\nrules:\n  - {name: r, type: vm-anti-affinity, vm_group: web, enforcement: should, weight: 101}\n",
			[]string{`p.yaml:6:83: rules[0].weight: must be between 1 and 100, got 101`}},
		{"weight on a must rule", "vm_groups:\n  - {name: web, pattern: web-*}\nrules:\n  - {name: r, type: vm-anti-affinity, vm_group: web, enforcement: must, weight: 5}\n",
			[]string{`p.yaml:6:81: rules[0].weight: weight is for should rules only; this rule is must`}},
		{"rule naming an unknown vm group", "vm_groups:\n  - {name: db, vms: [db-1]}\nrules:\n  - name: r\n    type: vm-anti-affinity\n    vm_group: dbs\n    enforcement: must\n",
			[]string{`p.yaml:8:15: rules[0].vm_group: unknown vm group "dbs" (did you mean "db"?)`}},
		{"rule naming an unknown host group", "host_groups:\n  - {name: rack-a, selector: {rack: a}}\n  - {name: rack-b, selector: {rack: b}}\nvm_groups:\n  - {name: db, vms: [db-1]}\nrules:\n  - {name: r, type: vm-host-affinity, vm_group: db, host_group: ssd, enforcement: must}\n",
			[]string{`p.yaml:9:65: rules[0].host_group: unknown host group "ssd" (known: rack-a, rack-b)`}},
		{"no groups at all", "rules:\n  - {name: r, type: vm-affinity, vm_group: db, enforcement: must}\n",
			[]string{`p.yaml:4:44: rules[0].vm_group: unknown vm group "db": vm_groups defines none`}},
		{"vm-host rule without host_group", "vm_groups:\n  - {name: db, vms: [db-1]}\nrules:\n  - name: r\n    type: vm-host-anti-affinity\n    vm_group: db\n    enforcement: should\n",
			[]string{`p.yaml:6:5: rules[0].host_group: missing; a vm-host-anti-affinity rule needs a host_group`}},
		{"vm-vm rule with host_group", "host_groups:\n  - {name: ssd, hosts: [h1]}\nvm_groups:\n  - {name: db, vms: [db-1]}\nrules:\n  - {name: r, type: vm-affinity, vm_group: db, host_group: ssd, enforcement: must}\n",
			[]string{`p.yaml:8:60: rules[0].host_group: a vm-affinity rule takes no host_group (it relates the group's VMs to each other)`}},
		{"rule missing its fields", "rules:\n  - name: r\n",
			[]string{
				`p.yaml:4:5: rules[0].type: missing; must be one of vm-affinity, vm-anti-affinity, vm-host-affinity, vm-host-anti-affinity`,
				`p.yaml:4:5: rules[0].enforcement: missing; must be one of must, should`,
				`p.yaml:4:5: rules[0].vm_group: missing; name one of vm_groups`,
			}},
		{"bad rule type and enforcement", "vm_groups:\n  - {name: db, vms: [db-1]}\nrules:\n  - {name: r, type: affinity, vm_group: db, enforcement: always}\n",
			[]string{
				`p.yaml:6:21: rules[0].type: must be one of vm-affinity, vm-anti-affinity, vm-host-affinity, vm-host-anti-affinity; got "affinity"`,
				`p.yaml:6:58: rules[0].enforcement: must be one of must, should; got "always"`,
			}},
		{"contradictory vm rules", "vm_groups:\n  - {name: db, vms: [db-1, db-2]}\nrules:\n  - {name: together, type: vm-affinity, vm_group: db, enforcement: must}\n  - {name: apart, type: vm-anti-affinity, vm_group: db, enforcement: must}\n",
			[]string{`p.yaml:7:5: rules[1]: must vm-anti-affinity contradicts must vm-affinity rule "together" (rules[0]): the VMs of vm group "db" cannot share one host and run on different hosts`}},
		{"contradictory vm rules on overlapping groups", "vm_groups:\n  - {name: a, vms: [x, y, z]}\n  - {name: b, vms: [z, w, y]}\nrules:\n  - {name: apart, type: vm-anti-affinity, vm_group: a, enforcement: must}\n  - {name: together, type: vm-affinity, vm_group: b, enforcement: must}\n",
			[]string{`p.yaml:8:5: rules[1]: must vm-affinity contradicts must vm-anti-affinity rule "apart" (rules[0]): vm groups "a" and "b" both list "y" and "z", which cannot share one host and run on different hosts`}},
		{"should rules never contradict", "vm_groups:\n  - {name: db, vms: [db-1, db-2]}\nrules:\n  - {name: together, type: vm-affinity, vm_group: db, enforcement: should}\n  - {name: apart, type: vm-anti-affinity, vm_group: db, enforcement: must}\n",
			nil},
		{"contradictory host rules", "host_groups:\n  - {name: ssd, selector: {disk: ssd}}\nvm_groups:\n  - {name: db, vms: [db-1]}\nrules:\n  - {name: on-ssd, type: vm-host-affinity, vm_group: db, host_group: ssd, enforcement: must}\n  - {name: off-ssd, type: vm-host-anti-affinity, vm_group: db, host_group: ssd, enforcement: must}\n",
			[]string{`p.yaml:9:5: rules[1]: must vm-host-anti-affinity contradicts must vm-host-affinity rule "on-ssd" (rules[0]): the VMs of vm group "db" cannot both run in and stay out of host group "ssd"`}},
		{"disjoint host affinities", "host_groups:\n  - {name: a, hosts: [h1, h2]}\n  - {name: b, hosts: [h3]}\nvm_groups:\n  - {name: db, vms: [db-1]}\nrules:\n  - {name: in-a, type: vm-host-affinity, vm_group: db, host_group: a, enforcement: must}\n  - {name: in-b, type: vm-host-affinity, vm_group: db, host_group: b, enforcement: must}\n",
			[]string{`p.yaml:10:5: rules[1]: must vm-host-affinity contradicts must vm-host-affinity rule "in-a" (rules[0]): host groups "a" and "b" share no host, so the VMs of vm group "db" could run nowhere`}},
		{"duplicate names", "host_groups:\n  - {name: a, hosts: [h1]}\n  - {name: a, hosts: [h2]}\nvm_groups:\n  - {name: db, vms: [x, x]}\n  - {name: db, pattern: db-*}\n",
			[]string{
				`p.yaml:5:12: host_groups[1].name: name "a" is already used by host_groups[0]`,
				`p.yaml:7:25: vm_groups[0].vms[1]: "x" is listed twice (also vm_groups[0].vms[0])`,
				`p.yaml:8:12: vm_groups[1].name: name "db" is already used by vm_groups[0]`,
			}},
		{"duplicate rule names", "vm_groups:\n  - {name: db, vms: [x]}\nrules:\n  - {name: r, type: vm-anti-affinity, vm_group: db, enforcement: must}\n  - {name: r, type: vm-affinity, vm_group: db, enforcement: should}\n",
			[]string{`p.yaml:7:12: rules[1].name: name "r" is already used by rules[0]`}},
		{"a vm group listed twice in budgets", "vm_groups:\n  - {name: db, vms: [x]}\ndisruption_budgets:\n  - {vm_group: db, max_migrating: 1}\n  - {vm_group: db, max_migrating: 2}\n  - {vm_group: web, max_migrating: 0}\n",
			[]string{
				`p.yaml:7:16: disruption_budgets[1].vm_group: vm group "db" already has a budget (disruption_budgets[0])`,
				`p.yaml:8:16: disruption_budgets[2].vm_group: unknown vm group "web" (known: db)`,
				`p.yaml:8:36: disruption_budgets[2].max_migrating: must be at least 1, got 0`,
			}},
		{"bad names", "host_groups:\n  - {name: rack a, hosts: [h1]}\n  - {hosts: [h2]}\n",
			[]string{
				`p.yaml:4:12: host_groups[0].name: "rack a" is not a good name: use 1 to 63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit`,
				`p.yaml:5:5: host_groups[1].name: missing; every entry of host_groups needs a name`,
			}},
		{"empty groups and a bad pattern", "host_groups:\n  - {name: a}\nvm_groups:\n  - {name: b}\n  - {name: c, pattern: \"web-[\"}\n",
			[]string{
				`p.yaml:4:5: host_groups[0].hosts: host group "a" has neither hosts nor a selector: it would hold no host`,
				`p.yaml:6:5: vm_groups[0].vms: vm group "b" has neither vms nor a pattern: it would hold no VM`,
				`p.yaml:7:24: vm_groups[1].pattern: bad pattern "web-[": syntax error in pattern`,
			}},
		{"metric cpu without prometheus", "balancing:\n  metric: cpu\n",
			[]string{`p.yaml:4:11: balancing.metric: metric cpu reads CPU utilisation from Prometheus: set metric_sources.prometheus with a url and a cpu_query`}},
		{"metric cpu without a query", "balancing:\n  metric: cpu\nmetric_sources:\n  prometheus:\n    url: http://prom:9090\n",
			[]string{`p.yaml:4:11: balancing.metric: metric cpu needs metric_sources.prometheus.cpu_query`}},
		{"prometheus url", "metric_sources:\n  prometheus:\n    url: ftp://prom\n    timeout: 0s\n    host_label: \"\"\n",
			[]string{
				`p.yaml:5:10: metric_sources.prometheus.url: must be an http or https URL, such as http://prometheus:9090; got "ftp://prom"`,
				`p.yaml:6:14: metric_sources.prometheus.timeout: must be at least 1s, got 0s`,
				`p.yaml:7:17: metric_sources.prometheus.host_label: must not be empty: it names the label that holds the host name`,
			}},
		{"prometheus without url", "metric_sources:\n  prometheus: {cpu_query: up}\n",
			[]string{`p.yaml:4:15: metric_sources.prometheus.url: missing; the Prometheus server's address, such as http://prometheus:9090`}},
		{"bad apiVersion", "apiVersion: herd/v2\nkind: Policy\n",
			[]string{`p.yaml:1:13: apiVersion: must be "herd/v1", got "herd/v2"`}},
		{"bad kind", "apiVersion: herd/v1\nkind: policy\n",
			[]string{`p.yaml:2:7: kind: must be "Policy", got "policy"`}},
		{"missing header", "# nothing else\nplacement: {strategy: pack}\n",
			[]string{`p.yaml:2:1: apiVersion: missing; must be "herd/v1"`, `p.yaml:2:1: kind: missing; must be "Policy"`}},
		{"syntax error", "placement: [\n",
			[]string{`p.yaml:3:1: did not find expected node content`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := tc.yaml
			if !strings.HasPrefix(y, "apiVersion") && !strings.HasPrefix(y, "#") {
				y = header + y
			}
			d, err := Parse("p.yaml", []byte(y))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			var errs yamlfile.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse = %v, %v; want yamlfile.Errors", d, err)
			}
			if d != nil {
				t.Error("Parse returned a document with its errors")
			}
			got := strings.Split(err.Error(), "\n")
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestParseReportsAll reads a file with a problem of each kind and wants
// every one, at once, in file order.
func TestParseReportsAll(t *testing.T) {
	_, err := LoadFile("testdata/several-problems.yaml")
	want := []string{
		`testdata/several-problems.yaml:7:11: host_groups[1].name: name "ssd" is already used by host_groups[0]`,
		`testdata/several-problems.yaml:8:17: host_groups[1].hosts[1]: "h1" is listed twice (also host_groups[1].hosts[0])`,
		`testdata/several-problems.yaml:12:11: vm_groups[1].name: "web servers" is not a good name: use 1 to 63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit`,
		`testdata/several-problems.yaml:15:13: placement.strategy: must be one of spread, pack; got "packed" (did you mean "pack"?)`,
		`testdata/several-problems.yaml:16:19: placement.memory_reserve: must be at least 0 and below 1, got 1`,
		`testdata/several-problems.yaml:22:5: rules[1]: must vm-affinity contradicts must vm-anti-affinity rule "db-apart" (rules[0]): the VMs of vm group "db" cannot share one host and run on different hosts`,
		`testdata/several-problems.yaml:26:5: rules[2].host_group: missing; a vm-host-affinity rule needs a host_group`,
		`testdata/several-problems.yaml:28:15: rules[2].vm_group: unknown vm group "dbs" (did you mean "db"?)`,
		`testdata/several-problems.yaml:30:5: rules[2].weigth: unknown field "weigth" (did you mean "weight"?)`,
		`testdata/several-problems.yaml:32:15: maintenance.per_target: must be at least 1, got 0`,
		`testdata/several-problems.yaml:33:22: maintenance.migration_timeout: invalid duration "soon": use a number and a unit, such as 90s, 5m or 1h`,
		`testdata/several-problems.yaml:35:11: balancing.metric: metric cpu reads CPU utilisation from Prometheus: set metric_sources.prometheus with a url and a cpu_query`,
		`testdata/several-problems.yaml:36:14: balancing.threshold: must be between 0 and 1, got 1.5`,
		`testdata/several-problems.yaml:39:20: disruption_budgets[0].max_migrating: must be at least 1, got 0`,
	}
	var errs yamlfile.Errors
	if !errors.As(err, &errs) || len(errs) != len(want) {
		t.Fatalf("LoadFile = %v; want %d errors", err, len(want))
	}
	for i, e := range errs {
		if e.Error() != want[i] {
			t.Errorf("error %d:\n got %s\nwant %s", i, e, want[i])
		}
	}
	if errs[5].Path != "rules[1]" || errs[5].Line != 22 || errs[5].Column != 5 {
		t.Errorf("error 5 at %s %d:%d, want rules[1] 22:5", errs[5].Path, errs[5].Line, errs[5].Column)
	}
}

// TestDefaults checks that a bare policy gets every default, that keys set
// keep their value (zero included where zero is valid), and Default.
func TestDefaults(t *testing.T) {
	want := &Document{
		APIVersion: APIVersion, Kind: Kind,
		Placement: PlacementPolicy{Strategy: StrategySpread},
		Maintenance: MaintenancePolicy{PerSource: 2, PerTarget: 2, Cluster: 8, Attempts: 3, MigrationTimeout: 30 * time.Minute,
			ShutdownTimeout: 5 * time.Minute, NoProgressTimeout: time.Hour, RetryBackoff: 5 * time.Second},
		Balancing: BalancingPolicy{Mode: BalanceOff, Strategy: BalanceEven, Metric: BalanceByMemory, Threshold: 0.10,
			MinGain: 0.01, MaxMoves: 10, Interval: 5 * time.Minute, Hold: time.Hour, TargetUtilisation: 0.8},
		Health: HealthPolicy{SuspectAfter: 2 * time.Second, DeadAfter: 10 * time.Second, AliveAfter: 10 * time.Second},
		Recovery: RecoveryPolicy{Automatic: true, StormThreshold: 0.5, LeaseTTL: 10 * time.Second, LeaseMargin: time.Second,
			RetryBackoff: 5 * time.Second, MaxBackoff: 2 * time.Minute, Concurrency: 8},
	}
	d, err := Parse("p.yaml", []byte(header))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Parse(bare) = %+v\nwant %+v", d, want)
	}
	if got := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("Default() = %+v\nwant %+v", got, want)
	}

	d, err = Parse("p.yaml", []byte(header+`vm_groups:
  - {name: db, vms: [x]}
rules:
  - {name: a, type: vm-anti-affinity, vm_group: db, enforcement: should}
  - {name: b, type: vm-affinity, vm_group: db, enforcement: should, weight: 3}
  - {name: c, type: vm-anti-affinity, vm_group: db, enforcement: must}
balancing:
  threshold: 0
  min_gain: 0
maintenance:
  per_source: 5
metric_sources:
  prometheus: {url: "http://prom:9090"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if w := []int{d.Rules[0].Weight, d.Rules[1].Weight, d.Rules[2].Weight}; !reflect.DeepEqual(w, []int{10, 3, 0}) {
		t.Errorf("rule weights = %v, want [10 3 0] (default for should rules only)", w)
	}
	if d.Balancing.Threshold != 0 || d.Balancing.MinGain != 0 || d.Balancing.MaxMoves != 10 {
		t.Errorf("balancing = %+v, want explicit zeros kept and max_moves defaulted", d.Balancing)
	}
	if d.Maintenance.PerSource != 5 || d.Maintenance.PerTarget != 2 {
		t.Errorf("maintenance = %+v, want per_source 5 and per_target 2", d.Maintenance)
	}
	if p := d.MetricSources.Prometheus; p.Timeout != 5*time.Second || p.HostLabel != "instance" {
		t.Errorf("prometheus = %+v, want timeout 5s, host_label instance", p)
	}
}

// TestRoundTrip parses valid policies, encodes them and parses that again:
// the same document, the same bytes, the same hash.
func TestRoundTrip(t *testing.T) {
	for _, file := range []string{"testdata/full.yaml", "../configs/policy.yaml", "testdata/minimal.yaml"} {
		t.Run(file, func(t *testing.T) {
			d, err := LoadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			again, y := reparse(t, d)
			if !reflect.DeepEqual(again, d) {
				t.Errorf("round trip changed the document:\n got %+v\nwant %+v", again, d)
			}
			y2, _ := again.YAML()
			if string(y2) != string(y) || again.Hash() != d.Hash() {
				t.Errorf("encoding not stable:\n%s\nthen\n%s", y, y2)
			}
		})
	}
}

// reparse parses the canonical encoding of d, which must parse.
func reparse(t *testing.T, d *Document) (*Document, []byte) {
	t.Helper()
	y, err := d.YAML()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse("canonical.yaml", y)
	if err != nil {
		t.Fatalf("canonical encoding does not parse: %v\n%s", err, y)
	}
	return again, y
}

func TestLoadFileMissing(t *testing.T) {
	_, err := LoadFile("testdata/no-such-file.yaml")
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "read policy: ") {
		t.Errorf("LoadFile(missing) = %v, want a wrapped os.ErrNotExist", err)
	}
}

// TestDuplicateKeyNoFollowOnErrors: a policy with a key twice gets that
// one error, at the second key, and none about fields it hid.
func TestDuplicateKeyNoFollowOnErrors(t *testing.T) {
	in := "apiVersion: herd/v1\nkind: Policy\nhealth:\n  suspect_after: 5s\nhealth:\n  dead_after: 30s\n"
	_, err := Parse("policy.yaml", []byte(in))
	want := `policy.yaml:5:1: health: duplicate key "health" (first at line 3)`
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
}
