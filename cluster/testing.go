package cluster

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/herd-project/herd/internal/testport"
)

// FreePort returns a loopback address with a port that is free and that no
// outgoing connection will take: it lies below the kernel's ephemeral range
// (testport).
func FreePort(t testing.TB) string {
	t.Helper()
	addr, err := testport.Addr()
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	return addr
}

// TestNodeConfig is a node config with short timeouts for in-process clusters.
func TestNodeConfig(t testing.TB, id, dir string) NodeConfig {
	return NodeConfig{
		ID:                 id,
		DataDir:            dir,
		Bind:               FreePort(t),
		HeartbeatTimeout:   200 * time.Millisecond,
		ElectionTimeout:    200 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond,
		Logger:             TestLogger(t),
	}
}

// TestLogger writes slog output to t.Log at warning level and above.
func TestLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// WaitFor polls cond until it holds or timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

// WaitLeader waits until exactly one of nodes leads and returns it.
func WaitLeader(t testing.TB, timeout time.Duration, nodes ...*Node) *Node {
	t.Helper()
	var leader *Node
	WaitFor(t, timeout, "a leader", func() bool {
		leader = nil
		for _, n := range nodes {
			if n != nil && n.IsLeader() {
				if leader != nil {
					return false
				}
				leader = n
			}
		}
		return leader != nil
	})
	return leader
}

// StartTestCluster forms an n-node cluster in dirs (one per node) on loopback.
func StartTestCluster(t testing.TB, dirs []string) []*Node {
	t.Helper()
	nodes := make([]*Node, len(dirs))
	servers := map[string]string{}
	for i, dir := range dirs {
		n, err := Open(TestNodeConfig(t, fmt.Sprintf("s%d", i+1), dir))
		if err != nil {
			t.Fatalf("open node %d: %v", i+1, err)
		}
		nodes[i] = n
		servers[n.ID()] = n.Addr()
	}
	for _, n := range nodes {
		if err := n.Bootstrap(servers); err != nil {
			t.Fatalf("bootstrap: %v", err)
		}
	}
	return nodes
}

var installMu sync.Mutex
var aptUpdated bool

// NeedProgram finds a program from a Debian package, installing the package
// when running as root; without it the test skips naming the package, or
// fails under CI=true.
func NeedProgram(t testing.TB, bin, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(bin); err == nil {
		return p
	}
	if os.Getuid() == 0 {
		installMu.Lock()
		if !aptUpdated {
			exec.Command("apt-get", "update", "-q").Run()
			aptUpdated = true
		}
		out, err := exec.Command("apt-get", "install", "-y", "-q", pkg).CombinedOutput()
		installMu.Unlock()
		if err != nil {
			t.Logf("apt-get install %s: %v\n%s", pkg, err, out)
		}
		if p, err := exec.LookPath(bin); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found: install the Debian package %s", bin, pkg)
	}
	t.Skipf("%s not found: install the Debian package %s", bin, pkg)
	return ""
}

// LargeState builds a synthetic inventory: hosts with vms VMs in all, each
// with a small definition (LargeStateDef for realistic ones).
func LargeState(hosts, vms int) *State {
	return LargeStateDef(hosts, vms, SmallDefinitionBytes)
}

// Link is a TCP proxy between a client and a server that a test can cut
// and mend: cut, it drops every connection and accepts new ones only to
// close them, as a lost network path looks to both ends.
type Link struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
}

// NewLink listens on a free loopback port and forwards to target.
func NewLink(t testing.TB, target string) *Link {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &Link{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go l.serve()
	t.Cleanup(func() { ln.Close(); l.Cut() })
	return l
}

// Addr is the proxy's address.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// Cut drops every connection and refuses new ones until Mend.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = true
	for c := range l.conns {
		c.Close()
	}
	l.conns = map[net.Conn]bool{}
}

// Mend lets connections through again.
func (l *Link) Mend() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = false
}

func (l *Link) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		go l.forward(c)
	}
}

func (l *Link) forward(c net.Conn) {
	l.mu.Lock()
	if l.cut {
		l.mu.Unlock()
		c.Close()
		return
	}
	l.mu.Unlock()
	s, err := net.Dial("tcp", l.target)
	if err != nil {
		c.Close()
		return
	}
	l.mu.Lock()
	if l.cut {
		l.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	l.conns[c], l.conns[s] = true, true
	l.mu.Unlock()
	go func() { _, _ = io.Copy(s, c); s.Close() }()
	_, _ = io.Copy(c, s)
	c.Close()
}
