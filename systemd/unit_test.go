// Package systemd holds the unit files; its tests check them and the
// install layout.
package systemd

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-project/herd/internal/testutil"
)

const unit = "herd-server.service"

// TestUnitVerifies runs systemd-analyze verify on each unit (with ExecStart
// pointing at an executable that exists here): no error, no warning.
func TestUnitVerifies(t *testing.T) {
	analyze := testutil.NeedProgram(t, "systemd-analyze", "systemd")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{unit, agentUnit} {
		text, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), u)
		if err := os.WriteFile(p, bytes.ReplaceAll(text, []byte("/usr/bin/herd "), []byte(exe+" ")), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", p).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", u, err, out)
		}
	}
}

const agentUnit = "herd-agent.service"

// TestAgentUnitSettings: the agent is Type=notify with a watchdog that
// kills a hung agent, restarts always (not on a bad config), resets the
// machine when it keeps failing, and keeps its lease in its state dir.
func TestAgentUnitSettings(t *testing.T) {
	text, err := os.ReadFile(agentUnit)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(text), "\n") {
		have[strings.TrimSpace(l)] = true
	}
	for _, want := range []string{
		"Type=notify", "WatchdogSec=10s", "WatchdogSignal=SIGKILL", "Restart=always", "RestartPreventExitStatus=2",
		"StartLimitAction=reboot-force", "StateDirectory=herd-agent", "ReadWritePaths=/var/lib/herd-agent",
		"ExecStart=/usr/bin/herd agent --config /etc/herd/agent.yaml", "NoNewPrivileges=yes", "ProtectSystem=strict",
	} {
		if !have[want] {
			t.Errorf("%s lacks %q", agentUnit, want)
		}
	}
}

// TestUnitSettings: the unit is Type=notify with a watchdog, restarts on
// failure, reloads with SIGHUP and is confined.
func TestUnitSettings(t *testing.T) {
	text, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(text), "\n") {
		have[strings.TrimSpace(l)] = true
	}
	for _, want := range []string{
		"Type=notify", "WatchdogSec=30s", "Restart=on-failure", "User=herd",
		"ExecReload=/bin/kill -HUP $MAINPID",
		"NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/herd", "ProtectHome=yes",
		"PrivateTmp=yes", "PrivateDevices=yes", "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
		"ProtectKernelLogs=yes", "ProtectControlGroups=yes", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
		"CapabilityBoundingSet=", "LockPersonality=yes", "MemoryDenyWriteExecute=yes", "RestrictRealtime=yes",
		"RestrictSUIDSGID=yes", "SystemCallArchitectures=native", "SystemCallFilter=@system-service",
	} {
		if !have[want] {
			t.Errorf("%s lacks %q", unit, want)
		}
	}
}

// TestMakeInstall lays Herd out under a temporary DESTDIR, twice: the
// second install leaves an edited herd.yaml and policy.yaml alone.
func TestMakeInstall(t *testing.T) {
	makeBin := testutil.NeedProgram(t, "make", "make")
	dest := t.TempDir()
	install := func() {
		t.Helper()
		cmd := exec.Command(makeBin, "-s", "install", "DESTDIR="+dest, "PREFIX=/usr", "GO=go")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make install: %v\n%s", err, out)
		}
	}
	install()
	for path, mode := range map[string]os.FileMode{
		"usr/bin/herd":                           0o755,
		"lib/systemd/system/herd-server.service": 0o644,
		"lib/systemd/system/herd-agent.service":  0o644,
		"etc/herd/agent.yaml":                    0o640,
		"etc/herd":                               os.ModeDir | 0o755,
		"etc/herd/herd.yaml":                     0o640,
		"etc/herd/policy.yaml":                   0o644,
		"var/lib/herd":                           os.ModeDir | 0o750,
	} {
		fi, err := os.Stat(filepath.Join(dest, path))
		if err != nil {
			t.Errorf("not installed: %v", err)
			continue
		}
		if fi.Mode()&(os.ModeDir|os.ModePerm) != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
		}
	}
	shipped, _ := os.ReadFile("../configs/herd.yaml")
	if got, _ := os.ReadFile(filepath.Join(dest, "etc/herd/herd.yaml")); !bytes.Equal(got, shipped) {
		t.Error("installed herd.yaml is not configs/herd.yaml")
	}
	if out, err := exec.Command(filepath.Join(dest, "usr/bin/herd"), "--version").CombinedOutput(); err != nil {
		t.Errorf("installed binary: %v %s", err, out)
	}

	edited := []byte("node_name: edited-by-the-operator\n")
	for _, f := range []string{"etc/herd/herd.yaml", "etc/herd/policy.yaml", "etc/herd/agent.yaml"} {
		if err := os.WriteFile(filepath.Join(dest, f), edited, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	install()
	for _, f := range []string{"etc/herd/herd.yaml", "etc/herd/policy.yaml", "etc/herd/agent.yaml"} {
		if got, _ := os.ReadFile(filepath.Join(dest, f)); !bytes.Equal(got, edited) {
			t.Errorf("a second install overwrote the edited %s", f)
		}
	}
}
