package placement

import (
	"testing"

	"github.com/herd-project/herd/policy/policytest"
)

func TestLedger(t *testing.T) {
	l := NewLedger()
	l.Reserve("a", "h1", "h2", 4*policytest.GiB)
	l.Reserve("b", "h1", "h2", 2*policytest.GiB)
	l.Reserve("c", "h3", "h2", 0) // offline migration: no memory, still in flight
	l.Reserve("d", "h1", "h4", -5)
	check := func(step, host string, reserved int64, to, from int) {
		t.Helper()
		if got := l.Reserved(host); got != reserved {
			t.Errorf("%s: Reserved(%s) = %d, want %d", step, host, got, reserved)
		}
		if got := l.InFlightTo(host); got != to {
			t.Errorf("%s: InFlightTo(%s) = %d, want %d", step, host, got, to)
		}
		if got := l.InFlightFrom(host); got != from {
			t.Errorf("%s: InFlightFrom(%s) = %d, want %d", step, host, got, from)
		}
	}
	check("reserve", "h2", 6*policytest.GiB, 3, 0)
	check("reserve", "h1", 0, 0, 3)
	check("reserve", "h4", 0, 1, 0)
	if l.Total() != 4 {
		t.Fatalf("Total = %d, want 4", l.Total())
	}

	clone := l.Clone()
	l.Reserve("a", "h1", "h3", 4*policytest.GiB) // replaces a's move
	check("replace", "h2", 2*policytest.GiB, 2, 0)
	check("replace", "h3", 4*policytest.GiB, 1, 1)
	if m, ok := l.Move("a"); !ok || m.To != "h3" || m.Bytes != 4*policytest.GiB {
		t.Errorf("Move(a) = %+v, %v", m, ok)
	}
	if clone.Reserved("h2") != 6*policytest.GiB || clone.Reserved("h3") != 0 {
		t.Errorf("clone changed with the original: h2 %d h3 %d", clone.Reserved("h2"), clone.Reserved("h3"))
	}

	for _, id := range []string{"a", "b", "c", "d", "unknown"} {
		l.Release(id)
	}
	if l.Total() != 0 || len(l.hosts) != 0 {
		t.Errorf("after releasing all: Total %d, hosts %v", l.Total(), l.hosts)
	}

	var nilLedger *Ledger
	if nilLedger.Reserved("h1") != 0 || nilLedger.InFlightTo("h1") != 0 || nilLedger.Total() != 0 {
		t.Error("nil ledger is not empty")
	}
	nilLedger.Release("a")
	if c := nilLedger.Clone(); c.Total() != 0 {
		t.Error("clone of nil ledger is not empty")
	}
	var zero Ledger
	zero.Reserve("a", "h1", "h2", policytest.GiB)
	if zero.Reserved("h2") != policytest.GiB {
		t.Error("zero Ledger does not reserve")
	}
}
