package fence

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/internal/testutil"
)

// testAgent is a fence agent written for the test: it reads the stdin
// protocol, keeps the power state in a file, records what it was given,
// and misbehaves on request (state=hang, a wrong password).
const testAgent = `#!/bin/sh
while IFS='=' read -r k v; do
  case "$k" in
    action) action=$v ;;
    state_file) state=$v ;;
    password) pw=$v ;;
    mode) mode=$v ;;
  esac
done
[ "$mode" = hang ] && sleep 30
if [ "$pw" != "s3cret" ]; then echo "login failed for password $pw" >&2; exit 1; fi
case "$action" in
  off) [ "$mode" = stuck ] || echo off > "$state"; exit 0 ;;
  on) echo on > "$state"; exit 0 ;;
  status) [ "$(cat "$state" 2>/dev/null)" = off ] && exit 2; exit 0 ;;
esac
echo "unknown action $action" >&2
exit 1
`

func newTestAgent(t *testing.T, mode, password string) (*Agent, string) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fence_test")
	if err := os.WriteFile(path, []byte(testAgent), 0o755); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte(password+"\n"), 0o600)
	state := filepath.Join(dir, "state")
	os.WriteFile(state, []byte("on\n"), 0o644)
	return &Agent{Name: "test h1", Path: path, Params: map[string]string{"state_file": state, "mode": mode},
		SecretFiles: map[string]string{"password": pw}, Timeout: 2 * time.Second, ConfirmTimeout: 2 * time.Second}, state
}

func TestFenceOffConfirmedByStatus(t *testing.T) {
	a, state := newTestAgent(t, "", "s3cret")
	ctx := context.Background()
	if p, err := a.Status(ctx); err != nil || p != On {
		t.Fatalf("status before: %s %v", p, err)
	}
	if err := a.Fence(ctx); err != nil {
		t.Fatalf("fence: %v", err)
	}
	if b, _ := os.ReadFile(state); strings.TrimSpace(string(b)) != "off" {
		t.Fatalf("state after fence: %q", b)
	}
	if err := a.On(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ := a.Status(ctx); p != On {
		t.Fatalf("status after on: %s", p)
	}
}

func TestFenceFailures(t *testing.T) {
	ctx := context.Background()
	t.Run("off not confirmed", func(t *testing.T) {
		a, _ := newTestAgent(t, "stuck", "s3cret")
		a.ConfirmTimeout = 500 * time.Millisecond
		err := a.Fence(ctx)
		if err == nil || !strings.Contains(err.Error(), "status still on after off") {
			t.Fatalf("an off the device does not confirm: %v", err)
		}
	})
	t.Run("agent fails, secret kept out of the error", func(t *testing.T) {
		a, _ := newTestAgent(t, "", "wrong-pass")
		err := a.Fence(ctx)
		var ae *AgentError
		if !errors.As(err, &ae) || ae.Code != 1 || ae.Action != "off" {
			t.Fatalf("failing agent: %v", err)
		}
		if strings.Contains(err.Error(), "wrong-pass") || !strings.Contains(err.Error(), "[redacted]") {
			t.Fatalf("secret leaked or output lost: %v", err)
		}
	})
	t.Run("hung agent times out", func(t *testing.T) {
		a, _ := newTestAgent(t, "hang", "s3cret")
		a.Timeout = 500 * time.Millisecond
		start := time.Now()
		err := a.Off(ctx)
		if !errors.Is(err, drivers.ErrTimeout) || time.Since(start) > 3*time.Second {
			t.Fatalf("hung agent: %v after %s", err, time.Since(start))
		}
	})
	t.Run("line breaks cannot inject parameters", func(t *testing.T) {
		a, _ := newTestAgent(t, "", "s3cret")
		a.Params["plug"] = "1\naction=on"
		if err := a.Off(ctx); err == nil || !strings.Contains(err.Error(), "params.plug") {
			t.Fatalf("injection: %v", err)
		}
	})
	t.Run("missing secret file", func(t *testing.T) {
		a, _ := newTestAgent(t, "", "s3cret")
		a.SecretFiles["password"] = "/nonexistent"
		if err := a.Off(ctx); err == nil || !strings.Contains(err.Error(), "read secret password") {
			t.Fatalf("missing secret: %v", err)
		}
	})
}

// TestFenceDummy drives Debian's fence_dummy (fence-agents) through off
// and status.
func TestFenceDummy(t *testing.T) {
	path := testutil.NeedProgram(t, "fence_dummy", "fence-agents")
	status := filepath.Join(t.TempDir(), "status")
	os.WriteFile(status, []byte("on"), 0o644)
	a := &Agent{Name: "dummy", Path: path, Params: map[string]string{"type": "file", "status_file": status}, Timeout: 20 * time.Second}
	ctx := context.Background()
	if p, err := a.Status(ctx); err != nil || p != On {
		t.Fatalf("fence_dummy status: %s %v", p, err)
	}
	if err := a.Fence(ctx); err != nil {
		t.Fatalf("fence_dummy fence: %v", err)
	}
	if p, err := a.Status(ctx); err != nil || p != Off {
		t.Fatalf("fence_dummy status after fence: %s %v", p, err)
	}
}
