package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/internal/testutil"
)

// TestServerLeaveCommand: three server processes with API tokens form a
// cluster; `herd server leave` takes one out, and that process exits 0.
func TestServerLeaveCommand(t *testing.T) {
	tok := writeTestTokens(t)
	apis := []string{testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)}
	var cmds []*exec.Cmd
	var logs []*bytes.Buffer
	for _, path := range serverConfigs(t, tok, apis, "") {
		cmd := exec.Command(os.Args[0], "-test.run=^TestServerProcess$")
		cmd.Env = append(os.Environ(), "HERD_TEST_SERVER_ARGS=server -config "+path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, logs = append(cmds, cmd), append(logs, &stderr)
	}
	defer func() {
		for _, c := range cmds {
			if c.ProcessState == nil {
				c.Process.Kill()
				c.Wait()
			}
		}
	}()
	c, _ := api.NewClient(apis[0], tok.read)
	c3, _ := api.NewClient(apis[2], tok.read)
	testutil.WaitFor(t, 30*time.Second, "a three-server cluster that s3 knows the leader's API of", func() bool {
		cl, err := c3.Cluster(context.Background())
		return err == nil && cl.LeaderAPI != "" && len(cl.Servers) == 3
	})

	if code, _, errOut := runCLI("server", "leave", "--address", apis[2], "--token", tok.read); code != exitError || !strings.Contains(errOut, "HTTP 403") {
		t.Fatalf("leave with a read token: exit %d %s", code, errOut)
	}
	code, out, errOut := runCLI("server", "leave", "--address", apis[2], "--token", tok.admin)
	if code != 0 || !strings.Contains(out, "Server s3 left the cluster") {
		t.Fatalf("leave: exit %d %s %s", code, out, errOut)
	}
	done := make(chan error, 1)
	go func() { done <- cmds[2].Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("s3 after leaving: %v\n%s", err, logs[2].String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("s3 did not stop after leaving:\n%s", logs[2].String())
	}
	testutil.WaitFor(t, 10*time.Second, "two servers left", func() bool {
		cl, err := c.Cluster(context.Background())
		return err == nil && cl.Leader != "" && len(cl.Servers) == 2
	})
}
