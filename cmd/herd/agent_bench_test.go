package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/daemon/daemontest"
	"github.com/herd-project/herd/drivers/libvirt/libvirttest"
	"github.com/herd-project/herd/internal/testutil"
)

// BenchmarkAgentFootprint runs the real herd binary as an agent — gossip
// with a dev server (encrypted), a lease renewed every TTL/3, its host's
// libvirtd (the libvirt fixture, three tiny VMs) probed every second — and
// reports its resident memory and CPU use at steady state.
func BenchmarkAgentFootprint(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "herd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	fx := libvirttest.StartFixture(b, 1)
	for i := 0; i < 3; i++ {
		fx.DefineVM(b, "lv1", fmt.Sprintf("tiny-%d", i), 64, true)
	}
	keyring := filepath.Join(dir, "gossip.keyring")
	os.WriteFile(keyring, []byte("AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n"), 0o600)
	dev := daemontest.StartDev(b, daemon.DevOptions{Hosts: 2, VMs: 2, Configure: func(c *config.Server) { c.Gossip.KeyringFile = keyring }})
	var gossipAddr string
	c, _ := api.NewClient(dev.APIAddr(), "")
	testutil.WaitFor(b, 10*time.Second, "gossip address", func() bool {
		cl, err := c.Cluster(context.Background())
		if err != nil {
			return false
		}
		for _, m := range cl.Gossip {
			gossipAddr = m.Addr
		}
		return gossipAddr != ""
	})
	host := dev.Sim.HostNames()[0]
	cfg := filepath.Join(dir, "agent.yaml")
	text := fmt.Sprintf("node_name: agent-1\nhost: %s\nservers: [%q]\ngossip:\n  listen: 127.0.0.1:0\n  keyring_file: %s\n  join: [%q]\nhypervisor:\n  uri: %q\nstate_file: %s\nlog:\n  level: warn\n",
		host, dev.APIAddr(), keyring, gossipAddr, fx.URI("lv1"), filepath.Join(dir, "lease.json"))
	os.WriteFile(cfg, []byte(text), 0o600)
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(bin, "agent", "--config", cfg)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		testutil.WaitFor(b, 20*time.Second, "lease armed", func() bool {
			h, err := c.Host(context.Background(), host)
			return err == nil && h.LeaseTTL > 0
		})
		time.Sleep(5 * time.Second)
		cpu0, at0 := cpuTime(b, cmd.Process.Pid), time.Now()
		time.Sleep(30 * time.Second)
		cpu1, at1 := cpuTime(b, cmd.Process.Pid), time.Now()
		rss := rssKiB(b, cmd.Process.Pid)
		if sm, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", cmd.Process.Pid)); err == nil {
			for _, l := range strings.Split(string(sm), "\n") {
				f := strings.Fields(l)
				if len(f) == 3 && (f[0] == "Pss_Anon:" || f[0] == "Pss_File:") {
					kb, _ := strconv.Atoi(f[1])
					b.ReportMetric(float64(kb)/1024, strings.ToLower(strings.TrimSuffix(f[0], ":"))+"-MiB")
				}
			}
		}
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if strings.Contains(stderr.String(), "level=ERROR") {
			b.Errorf("agent errors:\n%s", stderr.String())
		}
		b.ReportMetric(float64(rss)/1024, "rss-MiB")
		b.ReportMetric(100*(cpu1-cpu0).Seconds()/at1.Sub(at0).Seconds(), "cpu-%")
	}
}

// cpuTime is a process's user plus system CPU time.
func cpuTime(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// rssKiB is a process's resident set.
func rssKiB(b *testing.B, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(l)[1])
			return n
		}
	}
	return 0
}
