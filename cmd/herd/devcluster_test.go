package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/internal/testutil"
)

// TestDevClusterKillTheLeader: herd dev-cluster (the herd binary, built
// here) starts three servers over one simulator and prints where they are;
// killing the leader with SIGKILL, another takes over and herd cluster
// shows the killed one down, not as a follower; Ctrl-C stops everything.
func TestDevClusterKillTheLeader(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("the go tool is needed to build herd: ", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "herd")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build herd: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "dev-cluster", "--port", "0", "--hosts", "2", "--vms", "4", "--dir", filepath.Join(dir, "state"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var banner []string
	timeout := time.After(90 * time.Second)
read:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("dev-cluster ended early:\n%s", strings.Join(banner, "\n"))
			}
			banner = append(banner, l)
			if strings.HasPrefix(l, "Stop everything") {
				break read
			}
		case <-timeout:
			t.Fatalf("no banner within 90 s:\n%s", strings.Join(banner, "\n"))
		}
	}
	text := strings.Join(banner, "\n")
	server := regexp.MustCompile(`(?m)^  (s\d)  (http://\S+)\s+pid (\d+)\s+(\w+)`)
	token := regexp.MustCompile(`HERD_TOKEN=(\w+)`).FindStringSubmatch(text)
	rows := server.FindAllStringSubmatch(text, -1)
	if len(rows) != 3 || token == nil || !strings.Contains(text, "kill -9") {
		t.Fatalf("banner does not list three servers, a token and how to kill the leader:\n%s", text)
	}
	var leader, other []string
	for _, r := range rows {
		if r[4] == "leader" {
			leader = r
		} else if other == nil {
			other = r
		}
	}
	pid, _ := strconv.Atoi(leader[3])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the leader %s (pid %d): %v", leader[1], pid, err)
	}
	c, _ := api.NewClient(other[2], token[1])
	c.Consistent = true
	testutil.WaitFor(t, 30*time.Second, "another leader that sees "+leader[1]+" down", func() bool {
		cl, err := c.Cluster(context.Background())
		if err != nil || cl.Leader == "" || cl.Leader == leader[1] {
			return false
		}
		for _, s := range cl.Servers {
			if s.ID == leader[1] {
				return s.Health != nil && !s.Health.Up && !s.Health.Unknown
			}
		}
		return false
	})
	// Prometheus sees it too: the leader can lose no more voters.
	testutil.WaitFor(t, 10*time.Second, "herd_raft_failure_tolerance 0 on the new leader", func() bool {
		cl, err := c.Cluster(context.Background())
		if err != nil || cl.LeaderAPI == "" {
			return false
		}
		req, _ := http.NewRequest("GET", cl.LeaderAPI+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+token[1])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "\nherd_raft_failure_tolerance 0\n") && strings.Contains(string(b), "\nherd_raft_ready 1\n")
	})
	code, stdout, stderr := runCLI("cluster", "--address", other[2], "--token", token[1])
	var killedRow string
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, leader[1]+" ") {
			killedRow = l
		}
	}
	if code != 0 || !strings.Contains(killedRow, "down") || strings.Contains(killedRow, "follower") {
		t.Fatalf("herd cluster after killing %s: exit %d\n%s%s", leader[1], code, stdout, stderr)
	}
	t.Logf("after kill -9 of %s:\n%s", leader[1], stdout)

	// With one server down, taking out a live one would leave no majority:
	// refused. Removing the dead one is one command.
	var live string
	for _, r := range rows {
		if r[1] != leader[1] && r[1] != other[1] {
			live = r[1]
		}
	}
	if code, _, errOut := runCLI("server", "remove", live, "--address", other[2], "--token", token[1]); code != exitError || !strings.Contains(errOut, "majority") {
		t.Fatalf("removing live %s while %s is down: exit %d %q", live, leader[1], code, errOut)
	}
	if code, out, errOut := runCLI("server", "remove", leader[1], "--address", other[2], "--token", token[1]); code != 0 || !strings.Contains(out, "removed") {
		t.Fatalf("removing dead %s: exit %d %q %q", leader[1], code, out, errOut)
	}
	cl, err := c.Cluster(context.Background())
	if err != nil || len(cl.Servers) != 2 {
		t.Fatalf("servers after removing the dead one: %+v %v", cl, err)
	}

	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev-cluster after Ctrl-C: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("dev-cluster did not stop on Ctrl-C")
	}
	for _, r := range rows {
		p, _ := strconv.Atoi(r[3])
		if syscall.Kill(p, 0) == nil {
			t.Errorf("server %s (pid %d) still runs after dev-cluster stopped", r[1], p)
		}
	}
}
