package logbridge

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestLogBridges(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))

	h := HCLogger(l, "raft").Named("net").With("peer", "s2")
	h.Warn("heartbeat failed", "err", "timeout")
	h.Debug("below the adapter's level")
	h.SetLevel(hclog.Debug)
	h.Debug("now shown")
	h.StandardLogger(nil).Print("from a std logger")

	m := StdLogger(l, "memberlist")
	m.Print("[ERR] memberlist: failed to probe")
	m.Print("[DEBUG] memberlist: stream connection")

	out := buf.String()
	for _, want := range []string{
		`level=WARN msg="heartbeat failed" component=raft subcomponent=raft.net peer=s2 err=timeout`,
		`level=DEBUG msg="now shown" component=raft subcomponent=raft.net peer=s2`,
		`level=INFO msg="from a std logger"`,
		`level=ERROR msg="memberlist: failed to probe" component=memberlist`,
		`level=DEBUG msg="memberlist: stream connection" component=memberlist`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s\n%s", want, out)
		}
	}
	if strings.Contains(out, "below the adapter") {
		t.Error("a debug line passed an info-level adapter")
	}
}
