package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/internal/testutil"
)

// serverProc is one `herd server` process started from this test binary.
type serverProc struct {
	cfg string
	api string
	cmd *exec.Cmd
}

func (p *serverProc) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestServerProcess$")
	cmd.Env = append(os.Environ(), "HERD_TEST_SERVER_ARGS=server -config "+p.cfg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd = cmd
}

func (p *serverProc) kill9() {
	if p.cmd != nil {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		p.cmd.Wait()
		p.cmd = nil
	}
}

// TestKill9KeepsAcknowledgedWrites: three real server processes take
// writes from several clients; all three are killed with SIGKILL in the
// middle; restarted, they hold every write that was answered 2xx.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	tc := startCluster(t, "")
	procs, clients := tc.procs, tc.admin

	// Writers on every server (followers forward) until the kill.
	var mu sync.Mutex
	acked := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := clients[w%3]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				msg := fmt.Sprintf("write w%d-%d", w, i)
				err := c.AppendEvent(context.Background(), api.EventRequest{Type: "note", Message: msg})
				if err == nil {
					mu.Lock()
					acked[msg] = true
					mu.Unlock()
				}
			}
		}(w)
	}
	time.Sleep(1500 * time.Millisecond)
	for _, p := range procs {
		p.kill9()
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	n := len(acked)
	mu.Unlock()
	if n < 50 {
		t.Fatalf("only %d writes acknowledged before the kill", n)
	}

	for _, p := range procs {
		p.start(t)
	}
	var got map[string]bool
	testutil.WaitFor(t, 30*time.Second, "the restarted cluster", func() bool {
		ev, err := clients[0].Events(context.Background(), api.EventQuery{})
		if err != nil {
			return false
		}
		got = map[string]bool{}
		for _, e := range ev.Events {
			if e.Type == "note" {
				got[e.Message] = true
			}
		}
		return len(got) >= n
	})
	for msg := range acked {
		if !got[msg] {
			t.Errorf("acknowledged write %q lost after kill -9 of every server", msg)
		}
	}
	t.Logf("%d acknowledged writes, all present after kill -9 and restart (%d in the log)", n, len(got))
}
