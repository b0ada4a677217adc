package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-project/herd/internal/testutil"
)

// TestSystemdNotify runs `herd server -dev` as systemd would (Type=notify,
// WatchdogSec) and reads what it says on NOTIFY_SOCKET: READY=1 once the
// API answers, WATCHDOG=1 every half interval, STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	dir, err := os.MkdirTemp("", "sdn") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()

	apiAddr, raftAddr := testutil.FreePort(t), testutil.FreePort(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestServerProcess$")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=600000",
		"HERD_TEST_SERVER_ARGS=server -dev -dev-hosts 1 -dev-vms 1 -dev-api "+apiAddr+" -dev-raft "+raftAddr+" -data-dir "+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	next := func(what string, timeout time.Duration) string {
		t.Helper()
		select {
		case m := <-msgs:
			return m
		case <-time.After(timeout):
			t.Fatalf("no %s within %s; server stderr:\n%s", what, timeout, stderr.String())
		}
		return ""
	}
	if m := next("READY=1", 20*time.Second); m != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", m)
	}
	// READY means the API listens.
	if resp, err := httpGet("http://" + apiAddr + "/healthz"); err != nil || resp != 200 {
		t.Fatalf("API after READY=1: %d %v", resp, err)
	}
	start := time.Now()
	for i := 0; i < 3; i++ {
		if m := next("WATCHDOG=1", 2*time.Second); m != "WATCHDOG=1" {
			t.Fatalf("notification %q, want WATCHDOG=1", m)
		}
	}
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Errorf("3 watchdog pings took %s, want every 300ms", el)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	for {
		m := next("STOPPING=1", 10*time.Second)
		if m == "STOPPING=1" {
			break
		}
		if m != "WATCHDOG=1" {
			t.Fatalf("unexpected notification %q", m)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "systemd notify") {
		t.Errorf("notify errors logged:\n%s", stderr.String())
	}
}

func httpGet(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
