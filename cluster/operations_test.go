package cluster

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

func opState(t *testing.T) *State {
	t.Helper()
	s := NewState()
	must(t, s.Apply(&InventoryDiff{Driver: "dc",
		UpsertHosts: []Host{{Name: "a", MemoryBytes: 64 << 30}, {Name: "b", MemoryBytes: 64 << 30}, {Name: "c", MemoryBytes: 64 << 30}},
		UpsertVMs: []VM{
			{ID: "v1", Name: "big", Host: "a", MemoryBytes: 8 << 30, Power: PoweredOn},
			{ID: "v2", Name: "small", Host: "a", MemoryBytes: 1 << 30, Power: PoweredOn},
		}}, 1))
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantCode(t *testing.T, err error, code int) {
	t.Helper()
	var ae *ApplyError
	if !errors.As(err, &ae) || ae.Code != code {
		t.Fatalf("got %v, want ApplyError %d", err, code)
	}
}

func evacuation(id string, vms ...string) *StartOperation {
	op := Operation{ID: id, Kind: OpEvacuate, Host: "a", Migrate: "active-only", Created: t0}
	for _, v := range vms {
		op.Items = append(op.Items, OpItem{VM: v, Name: v, Action: ActionLiveMigrate, From: "a"})
	}
	return &StartOperation{Op: op}
}

func TestEvacuationLifecycle(t *testing.T) {
	s := opState(t)
	must(t, s.Apply(evacuation("op1", "v1", "v2"), 2))
	if h := s.Hosts["a"]; h.Maintenance != MaintenanceEntering || h.Admin != InMaintenance || h.Operation != "op1" {
		t.Fatalf("host after start: %+v", h)
	}
	// A second evacuation of the same host is an illegal transition.
	wantCode(t, s.Apply(&StartOperation{Op: Operation{ID: "op2", Kind: OpEvacuate, Host: "a", Created: t0}}, 3), 409)

	must(t, s.Apply(&StartItem{Op: "op1", VM: "v1", Target: "b", Time: t0}, 4))
	// Starting a running step again is refused: no VM moves twice.
	wantCode(t, s.Apply(&StartItem{Op: "op1", VM: "v1", Target: "c", Time: t0}, 5), 409)
	must(t, s.Apply(&FinishItem{Op: "op1", VM: "v1", OK: true, Time: t0.Add(time.Second)}, 6))
	if s.VMs["v1"].Host != "b" {
		t.Fatalf("VM after its move: %+v", s.VMs["v1"])
	}
	must(t, s.Apply(&StartItem{Op: "op1", VM: "v2", Target: "c", Time: t0}, 7))
	must(t, s.Apply(&FinishItem{Op: "op1", VM: "v2", OK: true, Time: t0.Add(2 * time.Second)}, 8))
	if op := s.Operations["op1"]; op.State != OpSucceeded {
		t.Fatalf("op: %+v", op)
	}
	if h := s.Hosts["a"]; h.Maintenance != MaintenanceOn || h.Admin != InMaintenance {
		t.Fatalf("host after evacuation: %+v", h)
	}
	// Exit: on → exiting → off, AVAILABLE.
	must(t, s.Apply(&StartOperation{Op: Operation{ID: "op3", Kind: OpExit, Host: "a", Parent: "op1", Created: t0}}, 9))
	if h := s.Hosts["a"]; h.Maintenance != MaintenanceOff || h.Admin != Available || s.Operations["op3"].State != OpSucceeded {
		t.Fatalf("host after exit: %+v", h)
	}
}

func TestRetriesThenErrorThenRetryOperation(t *testing.T) {
	s := opState(t)
	must(t, s.Apply(evacuation("op1", "v1"), 2))
	for i := 0; i < MaxAttempts; i++ {
		must(t, s.Apply(&StartItem{Op: "op1", VM: "v1", Target: []string{"b", "c", "b"}[i], Time: t0}, 3))
		must(t, s.Apply(&FinishItem{Op: "op1", VM: "v1", Error: "boom", Time: t0}, 4))
	}
	op := s.Operations["op1"]
	if op.State != OpFailed || op.Items[0].State != ItemFailed || op.Items[0].Attempts != MaxAttempts || len(op.Items[0].Tried) != 3 {
		t.Fatalf("op after %d failures: %+v", MaxAttempts, op)
	}
	if op.Error == "" || s.Hosts["a"].Maintenance != MaintenanceError || s.Hosts["a"].Admin != InMaintenance {
		t.Fatalf("host after failure: %+v, op error %q", s.Hosts["a"], op.Error)
	}
	must(t, s.Apply(&RetryOperation{Op: "op1", Time: t0}, 5))
	op = s.Operations["op1"]
	if op.State != OpRunning || op.Items[0].State != ItemPending || op.Items[0].Attempts != 0 || s.Hosts["a"].Maintenance != MaintenanceEntering {
		t.Fatalf("after retry: %+v", op)
	}
}

func TestCancelLetsInFlightFinish(t *testing.T) {
	s := opState(t)
	must(t, s.Apply(evacuation("op1", "v1", "v2"), 2))
	must(t, s.Apply(&StartItem{Op: "op1", VM: "v1", Target: "b", Time: t0}, 3))
	must(t, s.Apply(&CancelOperation{Op: "op1", Time: t0}, 4))
	op := s.Operations["op1"]
	if op.State != OpRunning || op.Items[1].State != ItemCancelled {
		t.Fatalf("after cancel: %+v", op)
	}
	wantCode(t, s.Apply(&StartItem{Op: "op1", VM: "v2", Target: "b", Time: t0}, 5), 409)
	must(t, s.Apply(&FinishItem{Op: "op1", VM: "v1", OK: true, Time: t0}, 6))
	if op := s.Operations["op1"]; op.State != OpCancelled || s.Hosts["a"].Maintenance != MaintenanceCancelled || s.Hosts["a"].Admin != InMaintenance {
		t.Fatalf("after in-flight finished: %+v host %+v", op, s.Hosts["a"])
	}
}

func TestRequeueDoesNotCountAttempt(t *testing.T) {
	s := opState(t)
	must(t, s.Apply(evacuation("op1", "v1"), 2))
	must(t, s.Apply(&StartItem{Op: "op1", VM: "v1", Target: "b", Time: t0}, 3))
	must(t, s.Apply(&FinishItem{Op: "op1", VM: "v1", Requeue: true, Time: t0}, 4))
	it := s.Operations["op1"].Items[0]
	if it.State != ItemPending || it.Attempts != 0 || len(it.Tried) != 0 {
		t.Fatalf("requeued item: %+v", it)
	}
}

// TestLostTargetIsNotAnAttempt: a step that failed because its target
// host was lost is not counted, up to MaxTargetLosses; the lost host stays
// tried, so the next try goes elsewhere; a cancelled operation gets none.
func TestLostTargetIsNotAnAttempt(t *testing.T) {
	s := opState(t)
	op := evacuation("op1", "v1")
	op.Op.MaxAttempts = 1
	must(t, s.Apply(op, 2))
	idx := uint64(3)
	step := func(target string, lost bool) OpItem {
		t.Helper()
		must(t, s.Apply(&StartItem{Op: "op1", VM: "v1", Target: target, Time: t0}, idx))
		must(t, s.Apply(&FinishItem{Op: "op1", VM: "v1", TargetLost: lost, Error: "target gone", Time: t0}, idx+1))
		idx += 2
		return s.Operations["op1"].Items[0]
	}
	for i := 1; i <= MaxTargetLosses; i++ {
		it := step([]string{"b", "c", "b"}[i-1], true)
		if it.State != ItemPending || it.Attempts != 0 || it.TargetLosses != i || len(it.Tried) != i || it.Error != "target gone" {
			t.Fatalf("after %d lost targets: %+v", i, it)
		}
	}
	// The bound is reached: this loss counts, and one attempt was allowed.
	if it := step("c", true); it.State != ItemFailed || it.Attempts != 1 {
		t.Fatalf("after %d lost targets and one more: %+v", MaxTargetLosses, it)
	}
	retryThenCancel(t, s, idx, &FinishItem{Op: "op1", VM: "v1", TargetLost: true, Error: "target gone", Time: t0})
}

// retryThenCancel checks, on op1's failed v1, that the operator's retry
// starts every count over, and that a step of a cancelled operation that
// ends with lost (a failure not counted otherwise) ends, not requeued.
func retryThenCancel(t *testing.T, s *State, idx uint64, lost *FinishItem) {
	t.Helper()
	must(t, s.Apply(&RetryOperation{Op: "op1", Time: t0}, idx))
	if it := s.Operations["op1"].Items[0]; it.TargetLosses != 0 || it.SourceLosses != 0 || it.Attempts != 0 || len(it.Tried) != 0 {
		t.Fatalf("after the operator's retry: %+v", it)
	}
	must(t, s.Apply(&StartItem{Op: "op1", VM: "v1", Target: "b", Time: t0}, idx+1))
	must(t, s.Apply(&CancelOperation{Op: "op1", Time: t0}, idx+2))
	must(t, s.Apply(lost, idx+3))
	if it := s.Operations["op1"].Items[0]; it.State != ItemFailed {
		t.Fatalf("%s of a cancelled operation: %+v", lost.Error, it)
	}
}

// TestLostSourceIsNotAnAttempt: a step that failed because the
// connection to its VM's host dropped is not counted, up to
// MaxSourceLosses, and its target stays a candidate (not kept as tried);
// the operator's retry starts the count over; a cancelled operation gets
// none.
func TestLostSourceIsNotAnAttempt(t *testing.T) {
	s := opState(t)
	op := evacuation("op1", "v1")
	op.Op.MaxAttempts = 1
	must(t, s.Apply(op, 2))
	idx := uint64(3)
	step := func(lost bool) OpItem {
		t.Helper()
		must(t, s.Apply(&StartItem{Op: "op1", VM: "v1", Target: "b", Time: t0}, idx))
		must(t, s.Apply(&FinishItem{Op: "op1", VM: "v1", SourceLost: lost, Error: "source not responding", Time: t0}, idx+1))
		idx += 2
		return s.Operations["op1"].Items[0]
	}
	for i := 1; i <= MaxSourceLosses; i++ {
		it := step(true)
		if it.State != ItemPending || it.Attempts != 0 || it.SourceLosses != i || len(it.Tried) != 0 || it.Error != "source not responding" {
			t.Fatalf("after %d lost sources: %+v", i, it)
		}
	}
	if it := step(true); it.State != ItemFailed || it.Attempts != 1 {
		t.Fatalf("after %d lost sources and one more: %+v", MaxSourceLosses, it)
	}
	retryThenCancel(t, s, idx, &FinishItem{Op: "op1", VM: "v1", SourceLost: true, Error: "source not responding", Time: t0})
}

func TestEmptyEvacuationIsOnAtOnce(t *testing.T) {
	s := opState(t)
	must(t, s.Apply(evacuation("op1"), 2))
	if s.Hosts["a"].Maintenance != MaintenanceOn || s.Operations["op1"].State != OpSucceeded {
		t.Fatalf("host %+v", s.Hosts["a"])
	}
}

func TestIllegalTransitionsChangeNothing(t *testing.T) {
	s := opState(t)
	before := s.Hosts["a"]
	wantCode(t, s.Apply(&StartOperation{Op: Operation{ID: "x", Kind: OpExit, Host: "a", Created: t0}}, 2), 409)
	wantCode(t, s.Apply(&StartOperation{Op: Operation{ID: "y", Kind: OpEvacuate, Host: "nope", Created: t0}}, 3), 404)
	wantCode(t, s.Apply(&CancelOperation{Op: "nope"}, 4), 404)
	wantCode(t, s.Apply(&RetryOperation{Op: "nope"}, 5), 404)
	if s.Hosts["a"] != before || len(s.Operations) != 0 {
		t.Fatalf("refused commands changed state: %+v", s.Hosts["a"])
	}
}

func TestSetPolicyVersions(t *testing.T) {
	s := NewState()
	must(t, s.Apply(&SetPolicy{YAML: []byte("a"), Hash: "ha", Time: t0}, 1))
	must(t, s.Apply(&SetPolicy{YAML: []byte("a"), Hash: "ha", Time: t0}, 2)) // same again: no new version
	if s.Policy.Version != 1 {
		t.Fatalf("version after the same policy twice: %d", s.Policy.Version)
	}
	wantCode(t, s.Apply(&SetPolicy{YAML: []byte("b"), Hash: "hb", IfVersion: 7}, 3), 409)
	must(t, s.Apply(&SetPolicy{YAML: []byte("b"), Hash: "hb", IfVersion: 1, Time: t0}, 4))
	if s.Policy.Version != 2 || string(s.Policy.YAML) != "b" {
		t.Fatalf("policy: %+v", s.Policy)
	}
}

func TestOperationAttemptsFromPolicy(t *testing.T) {
	s := opState(t)
	start := evacuation("op1", "v1")
	start.Op.MaxAttempts = 2
	must(t, s.Apply(start, 2))
	for i := 0; i < 2; i++ {
		must(t, s.Apply(&StartItem{Op: "op1", VM: "v1", Target: "b", Time: t0}, 3))
		must(t, s.Apply(&FinishItem{Op: "op1", VM: "v1", Error: "boom", Time: t0}, 4))
	}
	if op := s.Operations["op1"]; op.State != OpFailed || op.Items[0].Attempts != 2 {
		t.Fatalf("after 2 of 2 attempts: %+v", op)
	}
}

func TestEndedOperationsTrimmedDeterministically(t *testing.T) {
	build := func(order []int) *State {
		s := opState(t)
		for _, i := range order {
			// Same creation time for all: only the id can break ties.
			must(t, s.Apply(&StartOperation{Op: Operation{ID: fmt.Sprintf("op%04d", i), Kind: OpMigrate, Created: t0}}, uint64(i+2)))
		}
		return s
	}
	n := opsRetention + 20
	fwd, back := make([]int, n), make([]int, n)
	for i := range fwd {
		fwd[i], back[i] = i, n-1-i
	}
	a, b := build(fwd), build(back)
	if len(a.Operations) != opsRetention || len(b.Operations) != opsRetention {
		t.Fatalf("kept %d and %d ended operations, want %d", len(a.Operations), len(b.Operations), opsRetention)
	}
	for id := range a.Operations {
		if b.Operations[id] == nil {
			t.Fatalf("servers applying the same operations kept different ones (%s)", id)
		}
	}
}
