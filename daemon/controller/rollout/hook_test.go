package rollout

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/policy"
)

func TestExecRunner(t *testing.T) {
	env := map[string]string{"HERD_HOST": "esx-1", "HERD_ROLLOUT": "ro-1"}
	for _, tc := range []struct {
		name    string
		command []string
		timeout time.Duration
		out     string // in the output
		err     string // in the error; "" for success
	}{
		{"environment and {host}", []string{"/bin/sh", "-c", `echo "$HERD_ROLLOUT on $HERD_HOST, arg $0"`, "{host}"}, time.Minute, "ro-1 on esx-1, arg esx-1", ""},
		{"exit status", []string{"/bin/sh", "-c", "echo half done; exit 3"}, time.Minute, "half done", "exit status 3"},
		{"timeout kills the group", []string{"/bin/sh", "-c", "sleep 30 & wait"}, 300 * time.Millisecond, "", "timed out after 300ms"},
		{"missing program", []string{"/nonexistent/patch"}, time.Minute, "", "/nonexistent/patch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			out, err := ExecRunner{}.Run(context.Background(), policy.RolloutHook{Name: "h", Command: tc.command, Timeout: tc.timeout}, env)
			if !strings.Contains(out, tc.out) {
				t.Errorf("output %q, want %q in it", out, tc.out)
			}
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want %q", err, tc.err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %s: the hook's children were not killed", d)
			}
		})
	}
}

func TestTailBufferKeepsTheEnd(t *testing.T) {
	b := &tailBuffer{max: 8}
	b.Write([]byte("0123456789"))
	b.Write([]byte("ab"))
	if got := b.String(); got != "…456789ab" {
		t.Fatalf("got %q", got)
	}
}
