package libvirttest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// fixtureDirs are the directories each fixture host has to itself: the
// mount point, and the name of its source under the host's directory.
var fixtureDirs = [][2]string{
	{"/run/libvirt", "run"},
	{"/var/lib/libvirt", "lib"},
	{"/var/cache/libvirt", "cache"},
	{"/var/log/libvirt", "log"},
	{"/etc/libvirt", "etc"},
}

// fixtureScript runs in the new mount namespace: it binds the host's
// directories over the system's and becomes libvirtd.
const fixtureScript = `set -e
dir=$1; shift
while [ $# -gt 0 ]; do mkdir -p "$1"; mount --bind "$dir/$2" "$1"; shift 2; done
exec libvirtd --listen --config /etc/libvirt/libvirtd.conf --pid-file /run/libvirt/libvirtd.pid
`

const libvirtdConf = `listen_tls = 0
listen_tcp = 1
listen_addr = "%s"
tcp_port = "%d"
auth_tcp = "none"
auth_unix_rw = "none"
auth_unix_ro = "none"
host_uuid = "%s"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
`

// qemuConf runs QEMU as root without confinement, cgroups or a mount
// namespace of its own (it needs /dev/kvm, root-only here; in libvirtd's
// namespace, kill finds it), logs its output to files, gives each host
// its own migration ports, and makes p2p migrations notice a dead peer
// libvirtd within seconds.
const qemuConf = `user = "root"
namespaces = [ ]
group = "root"
dynamic_ownership = 0
stdio_handler = "file"
security_driver = "none"
cgroup_controllers = [ ]
migration_port_min = %d
migration_port_max = %d
keepalive_interval = 1
keepalive_count = 3
`

// migrationPorts is how many QEMU migration ports each host gets.
const migrationPorts = 16

// fixtureHost is one libvirtd of a Fixture.
type fixtureHost struct {
	name   string
	dir    string
	addr   string
	netns  string
	port   int
	migMin int
	uuid   string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	ns     string // the mount namespace, as /proc/PID/ns/mnt reads
}

func newFixtureHost(base string, spec FixtureHost) (*fixtureHost, error) {
	name := spec.Name
	h := &fixtureHost{name: name, dir: filepath.Join(base, name), uuid: NewUUID(), addr: "127.0.0.1", netns: spec.NetNS}
	var err error
	switch {
	case spec.NetNS != "":
		// A namespace of its own: the standard ports are free there.
		h.addr, h.port, h.migMin = spec.Addr, 16509, 49152
	default:
		if h.port, err = freePort(); err != nil {
			return nil, fmt.Errorf("host %s: %w", name, err)
		}
		if h.migMin, err = freePortRange(migrationPorts); err != nil {
			return nil, fmt.Errorf("host %s: %w", name, err)
		}
	}
	for _, d := range fixtureDirs {
		if err := os.MkdirAll(filepath.Join(h.dir, d[1]), 0o755); err != nil {
			return nil, err
		}
	}
	files := map[string]string{
		"libvirtd.conf": fmt.Sprintf(libvirtdConf, h.addr, h.port, h.uuid),
		"qemu.conf":     fmt.Sprintf(qemuConf, h.migMin, h.migMin+migrationPorts-1),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(h.dir, "etc", name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func (h *fixtureHost) uri() string {
	return fmt.Sprintf("qemu+tcp://%s/system", net.JoinHostPort(h.addr, strconv.Itoa(h.port)))
}

// start runs libvirtd in a new mount namespace and waits for its port.
func (h *fixtureHost) start() error {
	args := []string{"--mount", "--propagation", "private", "/bin/sh", "-c", fixtureScript, "sh", h.dir}
	for _, d := range fixtureDirs {
		args = append(args, d[0], d[1])
	}
	out, err := os.OpenFile(filepath.Join(h.dir, "daemon.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	loadCapabilities(h.dir)
	cmd := exec.Command("unshare", args...)
	if h.netns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", h.netns, "unshare"}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("host %s: start libvirtd: %w", h.name, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	h.mu.Lock()
	h.cmd, h.exited, h.ns = cmd, exited, ""
	h.mu.Unlock()

	deadline := time.Now().Add(fixtureStart)
	addr := net.JoinHostPort(h.addr, strconv.Itoa(h.port))
	for {
		select {
		case <-exited:
			return fmt.Errorf("host %s: libvirtd exited: %s\n%s", h.name, cmd.ProcessState, h.logTail())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			h.kill()
			return fmt.Errorf("host %s: libvirtd not listening on %s after %v\n%s", h.name, addr, fixtureStart, h.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := h.waitReady(time.Until(deadline)); err != nil {
		h.kill()
		return fmt.Errorf("host %s: %w\n%s", h.name, err, h.logTail())
	}
	saveCapabilities(h.dir)
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", cmd.Process.Pid))
	if err != nil {
		return fmt.Errorf("host %s: mount namespace of libvirtd: %w", h.name, err)
	}
	h.mu.Lock()
	h.ns = ns
	h.mu.Unlock()
	return os.WriteFile(filepath.Join(h.dir, "ns"), []byte(ns), 0o644)
}

// waitReady opens the QEMU driver, which libvirtd serves once it has
// initialised it (probing QEMU's capabilities, unless cached).
func (h *fixtureHost) waitReady(timeout time.Duration) error {
	u, err := url.Parse(h.uri())
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		l, err := golibvirt.ConnectToURI(u)
		if err == nil {
			_, err = l.ConnectGetVersion()
			l.Disconnect()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("libvirtd not ready: %w", err)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("libvirtd not ready after %v", timeout)
	}
}

// logTail is the end of the daemon's output and log, for errors.
func (h *fixtureHost) logTail() string {
	var b strings.Builder
	for _, f := range []string{"daemon.out", "log/libvirtd.log"} {
		data, _ := os.ReadFile(filepath.Join(h.dir, f))
		fmt.Fprintf(&b, "--- %s:\n%s\n", f, tail(data, 2000))
	}
	return b.String()
}

// signal sends sig to libvirtd.
func (h *fixtureHost) signal(sig syscall.Signal) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return errors.New("libvirtd not running")
	}
	return h.cmd.Process.Signal(sig)
}

// kill kills libvirtd and every process in its mount namespace (its QEMU
// processes), and waits for libvirtd to exit.
func (h *fixtureHost) kill() error {
	h.mu.Lock()
	cmd, exited, ns := h.cmd, h.exited, h.ns
	h.cmd = nil
	h.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		// libvirtd died already (a test killed the host's processes): its
		// mount namespace may be gone, and its number reused by another
		// host's new libvirtd. Only the QEMU pid files are safe to use.
		ns = ""
	default:
	}
	if ns != "" {
		killNamespace(ns)
	}
	cmd.Process.Kill()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("host %s: libvirtd (pid %d) did not exit", h.name, cmd.Process.Pid)
	}
	if ns != "" {
		killNamespace(ns) // QEMU processes libvirtd started while dying
	}
	killPIDFiles(filepath.Join(h.dir, "run", "qemu", "*.pid"))
	return nil
}
