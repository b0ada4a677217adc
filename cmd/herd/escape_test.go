package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/internal/testutil"
)

// TestCLIEscapesControlCharacters: a stored string with an escape
// sequence, a bell, a NUL or a line break (written before the API refused
// them, or by a driver) is printed escaped, never raw.
func TestCLIEscapesControlCharacters(t *testing.T) {
	dev := startDev(t, 1, 0)
	raw := "\x1b]0;pwned\x07 \x1b[31mred\x00\nFAKE line\r\u009b"
	ev := cluster.NewEvent("note", "token:x\x1b[2J", "", "", raw)
	testutil.WaitFor(t, 10*time.Second, "the dev server leads", dev.Node().IsLeader)
	if _, err := dev.Node().Apply(context.Background(), &cluster.AppendEvents{Events: []cluster.Event{ev}}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI("events", "--address="+dev.APIAddr())
	if code != 0 {
		t.Fatalf("events: exit %d %s", code, errOut)
	}
	if strings.ContainsAny(out, "\x1b\x07\x00\r\u009b") || strings.Contains(out, "\nFAKE") {
		t.Fatalf("raw control characters printed: %q", out)
	}
	for _, want := range []string{`\e]0;pwned\a \e[31mred\0\nFAKE line\r\u009b`, `token:x\e[2J`} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not show %q escaped:\n%s", want, out)
		}
	}
	if got := esc("tab\there"); got != `tab\there` {
		t.Errorf("esc(tab) = %q", got)
	}
	if got := esc("bad \xff utf8"); got != `bad \xff utf8` {
		t.Errorf("esc(invalid UTF-8) = %q", got)
	}
}
