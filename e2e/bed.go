//go:build e2e

// Package e2e is Herd's multi-host test bed: real herd servers, agents and
// libvirtd on real (virtual) networks — one network namespace per
// management node and per hypervisor host, joined by veth links to a
// bridge — with faults injected by cutting links, dropping packets with
// nftables, and killing or stopping processes. Run it with `make e2e`
// (root; it installs iproute2, nftables and the libvirt packages).
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/drivers/libvirt/libvirttest"
	"github.com/herd-project/herd/internal/testutil"
)

const (
	bridge     = "herdbr0"
	subnet     = "10.77.0"
	adminToken = "e2e-admin-0123456789"
	agentToken = "e2e-agent-0123456789"
	// leaseTTL is the agents' lease in the bed's policy.
	leaseTTL = 15 * time.Second
)

// member is one namespace of the bed: a management node or a host.
type member struct {
	name, ns, ip string
	cfg          string // its herd config file
	mu           sync.Mutex
	cmd          *exec.Cmd // herd server or herd agent
	log          *os.File
}

// Bed is the test bed: three servers and n hosts.
type Bed struct {
	t       *testing.T
	dir     string
	bin     string
	fx      *libvirttest.Fixture
	Servers []*member
	Hosts   []*member
	// libvirts lists the hosts' domains.
	libvirts lister
}

// run runs a command and fails the test on error.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// needPrograms checks for root and the bed's programs (make test-deps
// installs them).
func needPrograms(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the e2e test bed needs root (network namespaces)")
		}
		t.Skip("the e2e test bed needs root (network namespaces)")
	}
	testutil.NeedProgram(t, "ip", "iproute2")
	testutil.NeedProgram(t, "nft", "nftables")
}

// NewBed builds the networks, starts a libvirtd in each host namespace,
// three servers and an agent per host, and waits until the cluster has a
// leader, every host is alive and every agent holds its lease.
func NewBed(t *testing.T, hosts int) *Bed {
	needPrograms(t)
	cleanupNetworks()
	b := &Bed{t: t, dir: t.TempDir()}
	t.Cleanup(b.Close)
	b.bin = filepath.Join(b.dir, "herd")
	if out, err := exec.Command("go", "build", "-o", b.bin, "../cmd/herd").CombinedOutput(); err != nil {
		t.Fatalf("build herd: %v\n%s", err, out)
	}
	run(t, "ip", "link", "add", bridge, "type", "bridge")
	run(t, "ip", "addr", "add", subnet+".1/24", "dev", bridge)
	run(t, "ip", "link", "set", bridge, "up")
	for i := 1; i <= 3; i++ {
		b.Servers = append(b.Servers, b.addMember(fmt.Sprintf("s%d", i), fmt.Sprintf("%s.%d", subnet, 10+i)))
	}
	var specs []libvirttest.FixtureHost
	for i := 1; i <= hosts; i++ {
		m := b.addMember(fmt.Sprintf("h%d", i), fmt.Sprintf("%s.%d", subnet, 20+i))
		b.Hosts = append(b.Hosts, m)
		specs = append(specs, libvirttest.FixtureHost{Name: m.name, NetNS: m.ns, Addr: m.ip})
	}
	b.fx = libvirttest.StartFixtureHosts(t, specs)
	b.writeConfigs()
	for _, s := range b.Servers {
		b.Start(s)
	}
	for _, h := range b.Hosts {
		b.Start(h)
	}
	ctx := context.Background()
	testutil.WaitFor(t, 60*time.Second, "a leader, every host alive and leased", func() bool {
		hs, err := b.Client().Hosts(ctx)
		if err != nil || len(hs) != hosts {
			return false
		}
		for _, h := range hs {
			if h.Health != api.HealthAlive || h.LeaseTTL == 0 {
				return false
			}
		}
		return true
	})
	return b
}

// addMember creates a namespace linked to the bridge.
func (b *Bed) addMember(name, ip string) *member {
	m := &member{name: name, ns: "herd-" + name, ip: ip}
	veth := "hv-" + name
	run(b.t, "ip", "netns", "add", m.ns)
	run(b.t, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", m.ns)
	run(b.t, "ip", "link", "set", veth, "master", bridge, "up")
	run(b.t, "ip", "netns", "exec", m.ns, "ip", "addr", "add", ip+"/24", "dev", "eth0")
	run(b.t, "ip", "netns", "exec", m.ns, "ip", "link", "set", "eth0", "up")
	run(b.t, "ip", "netns", "exec", m.ns, "ip", "link", "set", "lo", "up")
	return m
}

// cleanupNetworks removes what a bed left (a run killed before its cleanup).
func cleanupNetworks() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], "herd-") {
			killNS(f[0])
			exec.Command("ip", "netns", "del", f[0]).Run()
		}
	}
	exec.Command("ip", "link", "del", bridge).Run()
	// A namespace some process still held keeps its veth: remove ours.
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	for _, l := range strings.Split(string(links), "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && strings.HasPrefix(f[1], "hv-") {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			exec.Command("ip", "link", "del", name).Run()
		}
	}
}

// killNS kills every process in a network namespace: a power cut.
func killNS(ns string) int {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	n := 0
	for _, f := range strings.Fields(string(out)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil && syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// Close stops everything and removes the networks.
func (b *Bed) Close() {
	for _, m := range append(append([]*member{}, b.Servers...), b.Hosts...) {
		b.Stop(m)
		killNS(m.ns)
	}
	b.libvirts.close()
	cleanupNetworks()
	b.keepLogs()
}

// keepLogs copies every member's whole log to $E2E_LOGS (make e2e: bin/
// e2e-logs) when the run failed: the bed's own directory is removed.
func (b *Bed) keepLogs() {
	dir := os.Getenv("E2E_LOGS")
	if dir == "" || !b.t.Failed() {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Logf("keep logs: %v", err)
		return
	}
	for _, m := range append(append([]*member{}, b.Servers...), b.Hosts...) {
		data, err := os.ReadFile(filepath.Join(b.dir, m.name+".log"))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, m.name+".log"), data, 0o644)
		}
		if err != nil {
			b.t.Logf("keep log of %s: %v", m.name, err)
		}
	}
	b.t.Logf("the members' logs are in %s", dir)
}

func (b *Bed) writeConfigs() {
	write := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(b.dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			b.t.Fatal(err)
		}
		return p
	}
	keyring := write("gossip.keyring", "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n", 0o600)
	tokens := write("tokens.yaml", "tokens:\n  - name: admin\n    role: admin\n    token_file: "+write("admin.token", adminToken, 0o600)+
		"\n  - name: agents\n    role: operate\n    token_file: "+write("agent.token", agentToken, 0o600)+"\n", 0o600)
	serverToken := write("server.token", "e2e-server-0123456789\n", 0o600)
	fence := write("fence_netns", fenceAgent, 0o755)
	var hostsYAML strings.Builder
	for _, h := range b.Hosts {
		fmt.Fprintf(&hostsYAML, "      - {name: %s, uri: \"qemu+tcp://%s:16509/system\", group: bed, migration_address: %s}\n", h.name, h.ip, h.ip)
	}
	// Power fencing for every host but the last: that one is fenced by its
	// agent's lease alone.
	var powered []string
	for _, h := range b.Hosts[:len(b.Hosts)-1] {
		powered = append(powered, h.name)
	}
	policy := write("policy.yaml", fmt.Sprintf(policyYAML, leaseTTL, fence, strings.Join(powered, ", ")), 0o644)
	var apis, gossips []string
	for _, s := range b.Servers {
		apis, gossips = append(apis, s.ip+":7420"), append(gossips, s.ip+":7422")
	}
	for _, s := range b.Servers {
		s.cfg = write(s.name+".yaml", fmt.Sprintf(serverYAML, s.name, filepath.Join(b.dir, s.name), s.ip, s.ip, tokens, serverToken,
			s.ip, s.ip, others(apis, s.ip), s.ip, keyring, others(gossips, s.ip), policy, hostsYAML.String()), 0o600)
	}
	for _, h := range b.Hosts {
		h.cfg = write(h.name+".yaml", fmt.Sprintf(agentYAML, h.name, h.name, `"http://`+strings.Join(apis, `", "http://`)+`"`,
			filepath.Join(b.dir, "agent.token"), h.ip, keyring, strings.Join(gossips, ", "), h.ip, filepath.Join(b.dir, h.name, "lease.json")), 0o600)
	}
}

func others(addrs []string, self string) string {
	var out []string
	for _, a := range addrs {
		if !strings.HasPrefix(a, self+":") {
			out = append(out, a)
		}
	}
	return strings.Join(out, ", ")
}

// fenceAgent powers a bed host off by killing every process of its
// network namespace (plug=NAMESPACE), and reports it off when none is left.
const fenceAgent = `#!/bin/sh
action=""; plug=""
while IFS= read -r l; do
  case "$l" in action=*) action="${l#action=}";; plug=*) plug="${l#plug=}";; esac
done
[ -n "$plug" ] || { echo "no plug" >&2; exit 1; }
case "$action" in
  off) ip netns pids "$plug" | xargs -r kill -9; exit 0;;
  status) [ -z "$(ip netns pids "$plug")" ] && exit 2; exit 0;;
  on) exit 0;;
esac
exit 1
`

const policyYAML = `apiVersion: herd/v1
kind: Policy
vm_groups:
  - name: high
    pattern: "*-hi"
    priority: 100
maintenance:
  retry_backoff: 1s
  migration_timeout: 2m
# One bridge, a quiet network: a crashed host's agent misses heartbeats
# after 0.75 s, and it is dead 2 s later. The flapping-link scenario
# (1 s cuts) shows such thresholds still cause no false death.
health:
  suspect_after: 1s
  dead_after: 2s
  alive_after: 3s
recovery:
  # Two of three hosts crash in one scenario: that is no storm here.
  storm_threshold: 0.7
  lease_ttl: %s
  lease_margin: 1s
  retry_backoff: 1s
  max_backoff: 5s
  fencing:
    - name: netns-power
      type: power
      agent: %s
      params: {plug: "herd-{host}"}
      hosts: [%s]
      timeout: 10s
      confirm_timeout: 5s
    - name: lease
      type: lease
`

const serverYAML = `node_name: %s
data_dir: %s
api:
  listen: %s:7420
  advertise: http://%s:7420
  tokens_file: %s
  server_token_file: %s
  metrics_open: true
  write_rate: 1000
  write_burst: 1000
raft:
  listen: %s:7421
  advertise: %s:7421
  bootstrap_expect: 3
  join: [%s]
gossip:
  listen: %s:7422
  keyring_file: %s
  join: [%s]
  # One switch, a quiet management network: a crashed host's agent is
  # declared dead sooner than with memberlist's LAN timings.
  profile: local
policy_file: %s
inventory:
  sync_interval: 1s
  timeout: 10s
log:
  level: info
drivers:
  - name: kvm
    type: libvirt
    call_timeout: 20s
    # Live migrations of VMs with real memory take seconds: long enough
    # to crash a host in the middle of one.
    bandwidth_mibs: 16
    hosts:
%s`

const agentYAML = `node_name: agent-%s
host: %s
servers: [%s]
token_file: %s
gossip:
  listen: %s:7422
  keyring_file: %s
  join: [%s]
  # One switch, a quiet management network: a crashed host's agent is
  # declared dead sooner than with memberlist's LAN timings.
  profile: local
hypervisor:
  uri: "qemu+tcp://%s:16509/system"
state_file: %s
`

// Start starts a member's herd process (server or agent) in its namespace.
func (b *Bed) Start(m *member) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return
	}
	role := []string{"server", "-config", m.cfg}
	if strings.HasPrefix(m.name, "h") {
		role = []string{"agent", "--config", m.cfg}
	}
	lf, err := os.OpenFile(filepath.Join(b.dir, m.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", m.ns, b.bin}, role...)...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	go cmd.Wait()
	m.cmd, m.log = cmd, lf
}

// Stop sends SIGTERM to a member's herd process and waits for it.
func (b *Bed) Stop(m *member) {
	m.mu.Lock()
	cmd := m.cmd
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for cmd.ProcessState == nil && syscall.Kill(cmd.Process.Pid, 0) == nil {
			time.Sleep(50 * time.Millisecond)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
	}
}

// Kill9 kills a member's herd process at once.
func (b *Bed) Kill9(m *member) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		m.cmd.Process.Kill()
		m.cmd = nil
	}
}

// PowerOff kills every process of a host's namespace (libvirtd, QEMU, the
// agent), as a crash or a power fence does.
func (b *Bed) PowerOff(h *member) int {
	h.mu.Lock()
	h.cmd = nil
	h.mu.Unlock()
	return killNS(h.ns)
}

// PowerOn boots a host again: its libvirtd (domains kept, shut off) and agent.
func (b *Bed) PowerOn(h *member) {
	b.fx.Boot(b.t, h.name)
	b.Start(h)
}

// CutLink takes a member's link down (fails fast) or brings it up.
func (b *Bed) CutLink(m *member, down bool) {
	state := "up"
	if down {
		state = "down"
	}
	run(b.t, "ip", "link", "set", "hv-"+m.name, state)
}

// Drop makes a member's namespace silently drop all traffic to and from
// addrs (nftables), or removes the rule: the realistic partition.
func (b *Bed) Drop(m *member, addrs []string, on bool) {
	if !on {
		exec.Command("ip", "netns", "exec", m.ns, "nft", "delete", "table", "inet", "herdcut").Run()
		return
	}
	set := strings.Join(addrs, ", ")
	rules := fmt.Sprintf("table inet herdcut {\n chain in { type filter hook input priority 0; ip saddr { %s } drop; }\n chain out { type filter hook output priority 0; ip daddr { %s } drop; }\n}\n", set, set)
	cmd := exec.Command("ip", "netns", "exec", m.ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.t.Fatalf("nft: %v\n%s", err, out)
	}
}

// Pause stops (SIGSTOP) or resumes (SIGCONT) a member's herd process.
func (b *Bed) Pause(m *member, stop bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	m.cmd.Process.Signal(sig)
}

// ServerIPs are the management addresses.
func (b *Bed) ServerIPs() []string {
	var out []string
	for _, s := range b.Servers {
		out = append(out, s.ip)
	}
	return out
}

// Client is an admin client of the leader, else of a server that knows
// one (a server cut off from the others answers from a stale state).
func (b *Bed) Client() *api.Client {
	var withLeader *api.Client
	for _, s := range b.Servers {
		c := b.ClientOf(s)
		cl, err := c.Cluster(context.Background())
		if err != nil || cl.Leader == "" {
			continue
		}
		if cl.Leader == s.name {
			return c
		}
		if withLeader == nil {
			withLeader = c
		}
	}
	if withLeader != nil {
		return withLeader
	}
	return b.ClientOf(b.Servers[0])
}

// ClientOf is an admin client of one server.
func (b *Bed) ClientOf(s *member) *api.Client {
	c, _ := api.NewClient("http://"+s.ip+":7420", adminToken)
	c.HTTP.Timeout = 3 * time.Second
	return c
}

// Leader is the server that leads now (nil when none answers).
func (b *Bed) Leader() *member {
	for _, s := range b.Servers {
		cl, err := b.ClientOf(s).Cluster(context.Background())
		if err == nil && cl.Leader != "" {
			for _, l := range b.Servers {
				if l.name == cl.Leader {
					return l
				}
			}
		}
	}
	return nil
}

// Host is the member named name.
func (b *Bed) Host(name string) *member {
	for _, h := range b.Hosts {
		if h.name == name {
			return h
		}
	}
	b.t.Fatalf("no host %s", name)
	return nil
}

// Define defines a tiny VM on a host (running or not).
func (b *Bed) Define(host, name string, running bool) {
	b.fx.DefineVM(b.t, host, name, 64, running)
}

// DefineNIC defines a tiny VM with a network adapter of MAC mac (user
// networking: nothing outside QEMU), so that its MAC can be checked.
func (b *Bed) DefineNIC(host, name, mac string, running bool) {
	b.fx.DefineDomain(b.t, host, libvirttest.VMSpec{Name: name, MemoryMiB: 64, Running: running,
		Devices: "<interface type='user'><mac address='" + mac + "'/><model type='virtio'/></interface>"})
}

// Identity reads VM name's identity (UUID, SMBIOS UUID, name, MACs) from
// host's libvirtd, as virsh dumpxml shows it.
func (b *Bed) Identity(host, name string) libvirttest.Identity {
	h := b.Host(host)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "virsh", "-c", "qemu+tcp://"+h.ip+":16509/system", "dumpxml", name).Output()
	if err != nil {
		b.t.Fatalf("virsh dumpxml %s on %s: %v", name, host, err)
	}
	return libvirttest.ParseIdentity(b.t, string(out))
}

// Domains is what each reachable libvirtd reports: host → VM name →
// power. With all false, running VMs only (cheaper: the watcher's view).
func (b *Bed) Domains(all bool) map[string]map[string]drivers.PowerState {
	out := map[string]map[string]drivers.PowerState{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, h := range b.Hosts {
		wg.Go(func() {
			states, ok := b.domainsOf(h, all)
			if ok {
				mu.Lock()
				out[h.name] = states
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// domainsOf lists a host's domains as its libvirtd reports them over TCP
// (false when it does not answer).
func (b *Bed) domainsOf(h *member, all bool) (map[string]drivers.PowerState, bool) {
	timeout := 2 * time.Second // the watcher's sample
	if all {
		timeout = 15 * time.Second // a scenario's check: a busy host answers slowly
	}
	deadline := time.Now().Add(timeout)
	addr := h.ip + ":16509"
	var everything []string
	if all {
		names, ok := b.libvirts.list(addr, true, deadline)
		if !ok {
			return nil, false
		}
		everything = names
	}
	// Running only: an incoming migration's paused copy is not running.
	running, ok := b.libvirts.list(addr, false, deadline)
	if !ok {
		return nil, false
	}
	return domainStates(everything, running), true
}

// Logs is the tail of every member's log, for failures.
func (b *Bed) Logs() string {
	var buf bytes.Buffer
	for _, m := range append(append([]*member{}, b.Servers...), b.Hosts...) {
		data, _ := os.ReadFile(filepath.Join(b.dir, m.name+".log"))
		if len(data) > 3000 {
			data = data[len(data)-3000:]
		}
		fmt.Fprintf(&buf, "--- %s:\n%s\n", m.name, data)
	}
	return buf.String()
}

// LeaderMetrics is the leader's /metrics text ("" when there is no leader
// or it does not answer).
func (b *Bed) LeaderMetrics() string {
	l := b.Leader()
	if l == nil {
		return ""
	}
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + l.ip + ":7420/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return string(data)
}

// hypervisorActions are the log messages of a server's driver calls that
// change a hypervisor.
var hypervisorActions = []string{`msg="live migration started"`, `msg="offline migration done"`, `msg="recreated VM"`,
	`msg="VM powered on"`, `msg="VM powered off"`, `msg="destroyed VM"`}

// ActionsIn returns the lines of m's log, between from and to, that record a
// change to a hypervisor.
func (b *Bed) ActionsIn(m *member, from, to time.Time) []string {
	data, err := os.ReadFile(filepath.Join(b.dir, m.name+".log"))
	if err != nil {
		b.t.Fatalf("log of %s: %v", m.name, err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		ts, ok := strings.CutPrefix(line, "time=")
		if !ok {
			continue
		}
		ts, _, _ = strings.Cut(ts, " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || at.Before(from) || at.After(to) {
			continue
		}
		for _, a := range hypervisorActions {
			if strings.Contains(line, a) {
				out = append(out, line)
				break
			}
		}
	}
	return out
}
