package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
)

// A changed line shows as its removal, then its addition, as diff -u has it.
func TestPolicyDiffRemovalsFirst(t *testing.T) {
	for _, tc := range []struct{ name, a, b, want string }{
		{"changed line", "a: 1\nb: 2\nc: 3\n", "a: 1\nb: 5\nc: 3\n", " a: 1\n-b: 2\n+b: 5\n c: 3\n"},
		{"changed block", "x\ny\nz\n", "x\nY\nZ\n", " x\n-y\n-z\n+Y\n+Z\n"},
		{"changed first line", "k: 1\nrest\n", "k: 2\nrest\n", "-k: 1\n+k: 2\n rest\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			unifiedDiff(&buf, "a", "b", []byte(tc.a), []byte(tc.b))
			out := buf.String()
			if !strings.Contains(out, tc.want) {
				t.Fatalf("diff:\n%s\nwant the lines\n%s", out, tc.want)
			}
		})
	}
}

// A balance operation has no host of its own: op show names the hosts of
// its moves.
func TestOpShowNamesBalanceHosts(t *testing.T) {
	op := api.Operation{ID: "op-1", Kind: api.OpBalance, Actor: "balancer", State: api.OpSucceeded,
		Items: []api.OpItem{
			{VM: "1", Name: "vm-1", From: "H1", Target: "H3", State: api.ItemDone, Action: api.ActionLiveMigrate},
			{VM: "2", Name: "vm-2", From: "H2", Planned: "H3", State: api.ItemCancelled, Action: api.ActionLiveMigrate},
		}, Total: 2, Done: 1, Cancelled: 1}
	var out bytes.Buffer
	if err := printOperation(&globals{stdout: &out, stderr: &out}, &op); err != nil {
		t.Fatal(err)
	}
	first := strings.SplitN(out.String(), "\n", 2)[0]
	if want := "Operation op-1: balance of H1 → H3, H2 → H3, succeeded (by balancer)"; first != want {
		t.Fatalf("op show: %q, want %q", first, want)
	}
}

// The balance plan's window line says open or closed, the time that
// matters, how long until it, and what waits.
func TestWindowLine(t *testing.T) {
	now := time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)
	opens, closes := now.Add(time.Hour), now.Add(2*time.Hour)
	for _, tc := range []struct {
		w    api.WindowState
		want string
	}{
		{api.WindowState{Name: "nightly", Opens: opens, Closes: closes},
			"Window nightly: closed, opens 2026-03-02 02:00 UTC (in 1h0m0s)"},
		{api.WindowState{Name: "nightly", Open: true, Opens: now, Closes: closes},
			"Window nightly: open, closes 2026-03-02 03:00 UTC (in 2h0m0s)"},
		{api.WindowState{Name: "nightly", Opens: opens, Closes: closes, Waiting: "automatic balancing waits for window nightly"},
			"Window nightly: closed, opens 2026-03-02 02:00 UTC (in 1h0m0s)\nWaiting: automatic balancing waits for window nightly"},
	} {
		if got := windowLine(&tc.w, now); got != tc.want {
			t.Errorf("windowLine(%+v) =\n%s\nwant\n%s", tc.w, got, tc.want)
		}
	}
}
