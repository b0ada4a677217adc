package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func recovery(id string, vms ...string) *StartOperation {
	op := Operation{ID: id, Kind: OpRecover, Host: "a", Created: t0, MaxAttempts: UnlimitedAttempts, Detected: t0.Add(-time.Second)}
	for _, v := range vms {
		op.Items = append(op.Items, OpItem{VM: v, Name: v, Action: ActionRecreate, From: "a"})
	}
	return &StartOperation{Op: op}
}

// TestNoRecoveryWithoutFencing is safety invariant 2 at the state machine:
// a recovery cannot start for a host that is not fenced, and a host cannot
// be fenced unless it is dead.
func TestNoRecoveryWithoutFencing(t *testing.T) {
	for _, h := range []Health{HealthUnknown, HealthAlive, HealthSuspect, HealthDead} {
		s := opState(t)
		must(t, s.Apply(&SetHostHealth{Host: "a", Health: h}, 2))
		wantCode(t, s.Apply(recovery("r1", "v1"), 3), 409)
		if len(s.Operations) != 0 {
			t.Fatalf("host %s: a recovery was recorded", h)
		}
	}
	s := opState(t)
	must(t, s.Apply(&SetHostHealth{Host: "a", Health: HealthSuspect}, 2))
	wantCode(t, s.Apply(&HostFenced{Host: "a", Method: "power", OK: true}, 3), 409)
	if s.Hosts["a"].Health != HealthSuspect {
		t.Fatalf("a suspect host was fenced: %+v", s.Hosts["a"])
	}
	// A failed chain is recorded; the host stays dead.
	must(t, s.Apply(&SetHostHealth{Host: "a", Health: HealthDead, Event: Event{Time: t0}}, 4))
	must(t, s.Apply(&HostFenced{Host: "a", OK: false, Error: "ipmi: timed out"}, 5))
	if h := s.Hosts["a"]; h.Health != HealthDead || h.FenceFailure != "ipmi: timed out" || !h.DownSince.Equal(t0) {
		t.Fatalf("after a failed chain: %+v", h)
	}
	wantCode(t, s.Apply(recovery("r1", "v1"), 6), 409)
}

// TestRecoveryLifecycle: fenced, recovered (old copy stale, new copy on the
// target), then the host returns NOT_ACCEPTING and cannot be opened before
// its stale copies are gone.
func TestRecoveryLifecycle(t *testing.T) {
	s := opState(t)
	must(t, s.Apply(&SetHostHealth{Host: "a", Health: HealthDead, Event: Event{Time: t0}}, 2))
	must(t, s.Apply(&HostFenced{Host: "a", Method: "power", OK: true}, 3))
	if h := s.Hosts["a"]; h.Health != HealthFenced || h.Admin != Offline || h.FencedBy != "power" {
		t.Fatalf("fenced host: %+v", h)
	}
	must(t, s.Apply(recovery("r1", "v1", "v2"), 4))
	wantCode(t, s.Apply(recovery("r2", "v1"), 5), 409) // one recovery per host
	must(t, s.Apply(&StartItem{Op: "r1", VM: "v1", Target: "b", Time: t0}, 6))
	must(t, s.Apply(&FinishItem{Op: "r1", VM: "v1", OK: true, NewID: "v1-new", Time: t0.Add(time.Second)}, 7))
	old, nv := s.VMs["v1"], s.VMs["v1-new"]
	if !old.Stale || old.Host != "a" || nv == nil || nv.Host != "b" || nv.RecreatedFrom != "v1" || nv.Power != PoweredOn || nv.Stale {
		t.Fatalf("after recreation: old %+v new %+v", old, nv)
	}
	if u := s.Usage(); u["a"].VMs != 1 || u["b"].MemoryUsedBytes != 8<<30 {
		t.Fatalf("usage counts the stale copy: %+v", u)
	}
	// A failure is retried for ever; a copy defined by a failed attempt is kept.
	must(t, s.Apply(&StartItem{Op: "r1", VM: "v2", Target: "c", Time: t0}, 30))
	must(t, s.Apply(&FinishItem{Op: "r1", VM: "v2", OK: false, NewID: "v2-copy", Error: "start timed out", Time: t0}, 31))
	if it := s.Operations["r1"].Items[1]; it.NewID != "v2-copy" || it.State != ItemPending {
		t.Fatalf("a failed start forgot its copy: %+v", it)
	}
	for i := 0; i < 4; i++ {
		must(t, s.Apply(&StartItem{Op: "r1", VM: "v2", Target: "c", Time: t0}, uint64(8+2*i)))
		must(t, s.Apply(&FinishItem{Op: "r1", VM: "v2", OK: false, Error: "no room", Time: t0}, uint64(9+2*i)))
	}
	if it := s.Operations["r1"].Items[1]; it.State != ItemPending || it.Attempts != 5 || it.NewID != "v2-copy" {
		t.Fatalf("blocked step: %+v", it)
	}
	must(t, s.Apply(&StartItem{Op: "r1", VM: "v2", Target: "c", Time: t0}, 20))
	must(t, s.Apply(&FinishItem{Op: "r1", VM: "v2", OK: true, NewID: "v2-new", Time: t0.Add(2 * time.Second)}, 21))
	if op := s.Operations["r1"]; op.State != OpSucceeded || s.Hosts["a"].Operation != "" {
		t.Fatalf("recovery end: %+v, host %+v", op, s.Hosts["a"])
	}
	// Inventory sync keeps Herd's marks.
	must(t, s.Apply(&InventoryDiff{Driver: "dc", UpsertVMs: []VM{{ID: "v1", Name: "big", Host: "a", MemoryBytes: 8 << 30, Power: PoweredOff}}}, 22))
	if !s.VMs["v1"].Stale {
		t.Fatal("inventory sync cleared the stale mark")
	}

	// Neither an operator nor a maintenance exit opens it while it is
	// fenced or holds stale copies.
	exitRefused := func(id string, index uint64, why string) {
		t.Helper()
		err := s.Apply(&StartOperation{Op: Operation{ID: id, Kind: OpExit, Host: "a", Created: t0}}, index)
		var ae *ApplyError
		if !errors.As(err, &ae) || ae.Code != 409 || ae.Field != "maintenance" || !strings.Contains(ae.Msg, why) {
			t.Fatalf("maintenance exit: %v, want a 409 saying %q", err, why)
		}
	}
	wantCode(t, s.Apply(&SetHostStatus{Host: "a", Status: Available}, 23), 409) // fenced
	exitRefused("x1", 24, "fenced")
	must(t, s.Apply(&HostReturned{Host: "a"}, 25))
	if h := s.Hosts["a"]; h.Health != HealthAlive || h.Admin != NotAccepting || h.FencedBy != "" {
		t.Fatalf("returned host: %+v", h)
	}
	wantCode(t, s.Apply(&SetHostStatus{Host: "a", Status: Available}, 26), 409) // stale copies
	exitRefused("x2", 27, "stale")
	must(t, s.Apply(&ForgetVMs{IDs: []string{"v1", "v2"}}, 28))
	must(t, s.Apply(&SetHostStatus{Host: "a", Status: Available}, 29))
}

// TestLeaseArming: arming and disarming; the armed TTL is what the state keeps.
func TestLeaseArming(t *testing.T) {
	s := opState(t)
	must(t, s.Apply(&HostLease{Host: "a", TTL: 10 * time.Second}, 2))
	if s.Hosts["a"].LeaseTTL != 10*time.Second {
		t.Fatal("lease not armed")
	}
	wantCode(t, s.Apply(&HostLease{Host: "a", TTL: -time.Second}, 3), 400)
	wantCode(t, s.Apply(&HostLease{Host: "nope", TTL: time.Second}, 4), 404)
	must(t, s.Apply(&HostLease{Host: "a"}, 5))
	if s.Hosts["a"].LeaseTTL != 0 {
		t.Fatal("lease not disarmed")
	}
}
