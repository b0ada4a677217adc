package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/daemontest"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = runWith(args, &o, &e)
	return code, o.String(), e.String()
}

func TestBadFlagsExit2(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"hots", "ls"}, "unknown command"},
		{"unknown flag", []string{"host", "ls", "--colour"}, "unknown flag"},
		{"bad output", []string{"host", "ls", "-o", "yaml"}, `-o/--output: "yaml" is not one of table, json`},
		{"extra argument", []string{"vm", "ls", "extra"}, "unknown command"},
		{"bad since", []string{"events", "--since", "yesterday"}, `--since "yesterday"`},
		{"bad address", []string{"host", "ls", "--address", "ftp://x"}, "--address"},
		{"server unknown flag", []string{"server", "-devv"}, "flag provided but not defined: -devv"},
		{"server bad dev hosts", []string{"server", "-dev", "-dev-hosts", "0"}, "-dev-hosts: 0 is out of range"},
		{"server dev off loopback", []string{"server", "-dev", "-dev-api", "0.0.0.0:7420"}, "loopback only"},
		{"server missing config", []string{"server", "-config", "/nonexistent/herd.yaml"}, "read config"},
		{"agent missing config", []string{"agent", "--config", "/nonexistent/agent.yaml"}, "read config"},
		{"agent extra argument", []string{"agent", "now"}, "unknown command"},
		{"host crash without a host", []string{"host", "crash"}, "accepts 1 arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(tt.args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr: %s", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Fatalf("stderr %q does not contain %q", stderr, tt.want)
			}
		})
	}
}

func TestBadConfigExit2WritesNothing(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "herd.yaml")
	text := "node_name: s1\ndata_dir: " + data + "\nraft:\n  bootstrap_expect: 1\n  advertise: 127.0.0.1:7421\n  snapshot_treshold: 10\n"
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI("server", "-config", cfg)
	if code != exitUsage {
		t.Fatalf("exit %d, want 2; stderr %s", code, stderr)
	}
	want := cfg + `:6:3: raft.snapshot_treshold: unknown field "snapshot_treshold" (did you mean "snapshot_threshold"?)`
	if strings.TrimSpace(stderr) != "herd: "+want {
		t.Fatalf("stderr:\n%s\nwant:\nherd: %s", stderr, want)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("data dir written despite the bad config: %v", err)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"1h":                   now.Add(-time.Hour),
		"90s":                  now.Add(-90 * time.Second),
		"2d":                   now.Add(-48 * time.Hour),
		"2026-11-01T00:00:00Z": time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"-1h", "2x", "d", "yesterday"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("parseSince(%q) accepted", bad)
		}
	}
}

func startDev(t *testing.T, hosts, vms int) *daemon.DevServer {
	return daemontest.StartDev(t, daemon.DevOptions{Hosts: hosts, VMs: vms,
		Policy: func(p *policy.Document) { p.Maintenance.RetryBackoff = time.Second }})
}

func TestCLIListsDevInventory(t *testing.T) {
	dev := startDev(t, 4, 32)
	addr := "--address=" + dev.APIAddr()
	var out string
	testutil.WaitFor(t, 20*time.Second, "herd host ls shows 4 hosts with 32 VMs", func() bool {
		code, stdout, _ := runCLI("host", "ls", addr, "-o", "json")
		var hosts api.Hosts
		if code != 0 || json.Unmarshal([]byte(stdout), &hosts) != nil || len(hosts.Hosts) != 4 {
			return false
		}
		n := 0
		for _, h := range hosts.Hosts {
			n += h.VMs
		}
		return n == 32
	})
	code, out, errOut := runCLI("host", "ls", addr)
	if code != 0 {
		t.Fatalf("host ls: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "MEM GiB (USED/TOTAL)") {
		t.Fatalf("host ls table:\n%s", out)
	}
	for i, name := range dev.Sim.HostNames() {
		f := strings.Fields(lines[i+1])
		// NAME ADMIN MAINTENANCE HEALTH CONNECTION VMS RUNNING MEM VCPU DRIVER GROUP
		if f[0] != name || f[1] != "AVAILABLE" || f[5] != "8" || !strings.HasSuffix(f[7], "/256.0") {
			t.Errorf("host ls row %q", lines[i+1])
		}
	}
	// Columns are aligned: every row starts its second column at the same place.
	col := strings.Index(lines[0], "ADMIN")
	for _, l := range lines[1:] {
		if l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("misaligned row %q", l)
		}
	}
	code, out, _ = runCLI("vm", "ls", addr)
	if code != 0 || strings.Count(out, "\nvm-") != 32 {
		t.Fatalf("vm ls: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI("vm", "ls", addr, "--host", dev.Sim.HostNames()[0], "-o", "json")
	var vms api.VMs
	if code != 0 || json.Unmarshal([]byte(out), &vms) != nil || len(vms.VMs) != 8 {
		t.Fatalf("vm ls --host -o json: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI("cluster", addr)
	if code != 0 || !strings.Contains(out, "Leader: dev") {
		t.Fatalf("cluster: %s", out)
	}
	code, out, _ = runCLI("events", addr, "--since", "10m", "--host", dev.Sim.HostNames()[0])
	if code != 0 || !strings.Contains(out, "inventory.host_added") {
		t.Fatalf("events: %s", out)
	}
	// A failed request exits 1 with the server's message.
	code, _, errOut = runCLI("host", "show", "nope", addr)
	if code != exitError || !strings.Contains(errOut, `host "nope" not found (HTTP 404)`) {
		t.Fatalf("host show nope: exit %d: %s", code, errOut)
	}
}

func TestCLIMaintenanceWait(t *testing.T) {
	dev := startDev(t, 3, 9)
	addr := "--address=" + dev.APIAddr()
	hosts := dev.Sim.HostNames()
	testutil.WaitFor(t, 20*time.Second, "inventory", func() bool {
		code, out, _ := runCLI("vm", "ls", addr)
		return code == 0 && strings.Count(out, "\nvm-") == 9
	})
	code, out, errOut := runCLI("host", "maintenance", "precheck", hosts[0], "--migrate", "all", addr)
	if code != 0 || !strings.Contains(out, "live-migrate") || !strings.Contains(out, "Nothing blocks") {
		t.Fatalf("precheck: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI("host", "maintenance", "enable", hosts[0], "--migrate", "all", "--wait", addr)
	if code != 0 || !strings.Contains(out, "succeeded") || !strings.Contains(out, "maintenance on") {
		t.Fatalf("enable --wait: exit %d\n%s%s", code, out, errOut)
	}
	// A VM that cannot move: the host ends in error and --wait exits 1.
	dev.Sim.InjectFault("RelocateVM_Task", "*", "simulated vMotion failure")
	code, out, _ = runCLI("host", "maintenance", "enable", hosts[1], "--migrate", "active-only", "--wait", addr)
	if code != exitError || !strings.Contains(out, "failed") || !strings.Contains(out, "maintenance error") {
		t.Fatalf("enable --wait on failure: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI("op", "ls", addr, "--host", hosts[1])
	if code != 0 || !strings.Contains(out, "failed") {
		t.Fatalf("op ls: %s", out)
	}
	dev.Sim.ClearFaults()
	id := strings.Fields(strings.Split(out, "\n")[1])[0]
	if code, out, _ = runCLI("op", "retry", id, addr); code != 0 {
		t.Fatalf("op retry: %s", out)
	}
	testutil.WaitFor(t, 20*time.Second, "retried evacuation", func() bool {
		_, out, _ := runCLI("op", "show", id, addr)
		return strings.Contains(out, ", succeeded (by")
	})
	code, out, _ = runCLI("host", "maintenance", "exit-precheck", hosts[1], addr)
	if code != 0 || !strings.Contains(out, "live-migrate") {
		t.Fatalf("exit-precheck: %s", out)
	}
	code, out, _ = runCLI("host", "maintenance", "disable", hosts[1], "--wait", addr)
	if code != 0 || !strings.Contains(out, "succeeded") {
		t.Fatalf("disable --wait: %s", out)
	}
	code, _, errOut = runCLI("host", "status", hosts[1], "SLEEPING", addr)
	if code != exitUsage || !strings.Contains(errOut, "is not one of") {
		t.Fatalf("bad status: exit %d %s", code, errOut)
	}
	if code, out, _ = runCLI("host", "status", hosts[1], "not_accepting", "--reason", "disk", addr); code != 0 || !strings.Contains(out, "NOT_ACCEPTING") {
		t.Fatalf("host status: %s", out)
	}
	if code, out, _ = runCLI("vm", "migrate", "vm-001", "--to", hosts[1], "--wait", addr); code != 0 || !strings.Contains(out, "succeeded") {
		t.Fatalf("vm migrate to NOT_ACCEPTING by an operator: exit %d %s", code, out)
	}
}

// TestCLIHostCrashAndRestore: the dev-mode crash path as a person sees it
// with the default dev policy: crash a host, it ends fenced and its VMs
// are recovered; restore it, it comes back NOT_ACCEPTING.
func TestCLIHostCrashAndRestore(t *testing.T) {
	dev := daemontest.StartDev(t, daemon.DevOptions{Hosts: 2, VMs: 4})
	addr := "--address=" + dev.APIAddr()
	host := dev.Sim.HostNames()[1]
	testutil.WaitFor(t, 20*time.Second, "inventory", func() bool {
		_, out, _ := runCLI("vm", "ls", addr)
		return strings.Count(out, "\nvm-") == 4
	})
	code, out, errOut := runCLI("host", "crash", host, addr)
	if code != 0 || !strings.Contains(out, "stops answering") {
		t.Fatalf("host crash: exit %d: %s %s", code, out, errOut)
	}
	showHost := func() api.Host {
		_, stdout, _ := runCLI("host", "show", host, addr, "-o", "json")
		var h api.Host
		_ = json.Unmarshal([]byte(stdout), &h)
		return h
	}
	testutil.WaitFor(t, 30*time.Second, "host fenced and recovered", func() bool {
		_, ops, _ := runCLI("op", "ls", addr)
		return showHost().Health == api.HealthFenced && strings.Contains(ops, "recover") && strings.Contains(ops, "succeeded")
	})
	if code, out, _ = runCLI("host", "restore", host, addr); code != 0 || !strings.Contains(out, "answers again") {
		t.Fatalf("host restore: exit %d: %s", code, out)
	}
	testutil.WaitFor(t, 30*time.Second, "host back", func() bool {
		h := showHost()
		return h.Health == api.HealthAlive && h.Admin == api.NotAccepting
	})
}
