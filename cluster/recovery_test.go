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
	must(t, s.Apply(&FinishItem{Op: "r1", VM: "v1", OK: true, NewID: "v1", Time: t0.Add(time.Second)}, 7))
	// The same VM, same id, now on b; what a still holds of it is a stale
	// copy, not a second VM.
	nv, sc := s.VMs["v1"], s.StaleCopies[StaleKey("a", "v1")]
	if nv == nil || nv.Host != "b" || nv.RecreatedFrom != "" || nv.Power != PoweredOn || nv.Name != "big" {
		t.Fatalf("after recreation: VM %+v", nv)
	}
	if sc == nil || sc.VM != "v1" || sc.ID != "v1" || sc.Host != "a" || sc.Name != "big" || !sc.Since.Equal(t0.Add(time.Second)) {
		t.Fatalf("after recreation: stale copy %+v", sc)
	}
	if n := len(s.SortedVMs()); n != 2 {
		t.Fatalf("%d VMs listed, want 2 (each once)", n)
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
	// A copy that got a new id (a driver that could not keep it): the VM
	// record follows it, and the stale copy keeps the old id.
	if vm, sc := s.VMs["v2-new"], s.StaleCopies[StaleKey("a", "v2")]; vm == nil || vm.RecreatedFrom != "v2" || s.VMs["v2"] != nil || sc == nil || sc.VM != "v2-new" {
		t.Fatalf("recreated under a new id: VM %+v, old %+v, stale %+v", vm, s.VMs["v2"], sc)
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
	must(t, s.Apply(&ForgetVMs{Host: "b", IDs: []string{"v1", "v2"}}, 28)) // not b's
	wantCode(t, s.Apply(&SetHostStatus{Host: "a", Status: Available}, 29), 409)
	must(t, s.Apply(&ForgetVMs{Host: "a", IDs: []string{"v1", "v2"}}, 30))
	if len(s.StaleCopies) != 0 || s.VMs["v1"] == nil || s.VMs["v2-new"] == nil {
		t.Fatalf("forgetting the stale copies: stale %+v, VMs %+v", s.StaleCopies, s.VMs)
	}
	must(t, s.Apply(&SetHostStatus{Host: "a", Status: Available}, 31))
}

// TestReadStateMovesLegacyStaleVMs: a state written when stale copies were
// VMs marked stale reads back with them as stale copies.
func TestReadStateMovesLegacyStaleVMs(t *testing.T) {
	doc := `{"hosts":{},"vms":{"old":{"id":"old","name":"web","host":"a","driver":"kvm","stale":true},` +
		`"new":{"id":"new","name":"web","host":"b","driver":"kvm","recreated_from":"old"}}}`
	s, err := ReadState(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	sc := s.StaleCopies[StaleKey("a", "old")]
	if len(s.VMs) != 1 || s.VMs["new"] == nil || sc == nil || sc.VM != "new" || sc.Name != "web" || sc.Driver != "kvm" {
		t.Fatalf("VMs %+v, stale copies %+v", s.VMs, s.StaleCopies)
	}
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
