package cluster

import (
	"bytes"
	"testing"
	"time"
)

func newRollout(id string, parallel int, onFailure string, hosts ...string) *CreateRollout {
	r := Rollout{ID: id, Parallel: parallel, OnFailure: onFailure, Migrate: "all", Created: t0}
	for i, h := range hosts {
		r.Hosts = append(r.Hosts, RolloutHost{Host: h, Wave: i/max(parallel, 1) + 1})
	}
	return &CreateRollout{Rollout: r}
}

func step(id, host string, from, to RolloutPhase) *RolloutStep {
	return &RolloutStep{Rollout: id, Host: host, From: from, To: to, Time: t0}
}

// walk takes host through every phase of a successful step.
func walk(t *testing.T, s *State, id, host string, idx *uint64) {
	t.Helper()
	path := []RolloutPhase{PhasePending, PhaseEntering, PhaseWorking, PhaseReturning, PhaseExiting, PhaseDone}
	for i := 0; i+1 < len(path); i++ {
		*idx++
		must(t, s.Apply(step(id, host, path[i], path[i+1]), *idx))
	}
}

func TestRolloutLifecycle(t *testing.T) {
	s := opState(t)
	must(t, s.Apply(newRollout("r1", 1, OnFailureStop, "a", "b"), 2))
	// A host can be in one unfinished rollout only.
	wantCode(t, s.Apply(newRollout("r2", 1, OnFailureStop, "b"), 3), 409)
	idx := uint64(3)
	walk(t, s, "r1", "a", &idx)
	// A finished step is never taken again: every phase change is a
	// compare-and-set on the host's phase.
	wantCode(t, s.Apply(step("r1", "a", PhasePending, PhaseEntering), 20), 409)
	wantCode(t, s.Apply(step("r1", "a", PhaseExiting, PhaseDone), 21), 409)
	if r := s.Rollouts["r1"]; r.State != RolloutRunning {
		t.Fatalf("rollout ended with a host pending: %s", r.State)
	}
	idx = 30
	walk(t, s, "r1", "b", &idx)
	r := s.Rollouts["r1"]
	if r.State != RolloutSucceeded || r.PhaseCounts()[PhaseDone] != 2 {
		t.Fatalf("rollout: %+v", r)
	}
	// Ended: no more steps.
	wantCode(t, s.Apply(step("r1", "b", PhaseDone, PhaseDone), 50), 409)
	// The host is free for a new rollout.
	must(t, s.Apply(newRollout("r2", 1, OnFailureStop, "b"), 51))
}

func TestRolloutParallelIsEnforcedByTheStateMachine(t *testing.T) {
	s := opState(t)
	must(t, s.Apply(newRollout("r1", 2, OnFailureStop, "a", "b", "c"), 2))
	must(t, s.Apply(step("r1", "a", PhasePending, PhaseEntering), 3))
	must(t, s.Apply(step("r1", "b", PhasePending, PhaseEntering), 4))
	wantCode(t, s.Apply(step("r1", "c", PhasePending, PhaseEntering), 5), 409)
	if n := s.Rollouts["r1"].Out(); n != 2 {
		t.Fatalf("out = %d", n)
	}
	must(t, s.Apply(step("r1", "a", PhaseEntering, PhaseFailed), 6))
	// on_failure stop: nothing starts; the rollout ends when b is back.
	wantCode(t, s.Apply(step("r1", "c", PhasePending, PhaseEntering), 7), 409)
	idx := uint64(8)
	for _, p := range [][2]RolloutPhase{{PhaseEntering, PhaseWorking}, {PhaseWorking, PhaseReturning}, {PhaseReturning, PhaseExiting}, {PhaseExiting, PhaseDone}} {
		must(t, s.Apply(step("r1", "b", p[0], p[1]), idx))
		idx++
	}
	r := s.Rollouts["r1"]
	if r.State != RolloutFailed || r.Hosts[2].Phase != PhaseSkipped || r.Error == "" {
		t.Fatalf("rollout after a failure with on_failure stop: %+v", r)
	}
}

func TestRolloutSkipGoesOn(t *testing.T) {
	s := opState(t)
	must(t, s.Apply(newRollout("r1", 1, OnFailureSkip, "a", "b"), 2))
	must(t, s.Apply(step("r1", "a", PhasePending, PhaseEntering), 3))
	must(t, s.Apply(&RolloutStep{Rollout: "r1", Host: "a", From: PhaseEntering, To: PhaseFailed, Error: "evacuation ended in error", Time: t0}, 4))
	idx := uint64(5)
	walk(t, s, "r1", "b", &idx)
	r := s.Rollouts["r1"]
	if r.State != RolloutFailed || r.Hosts[0].Error != "evacuation ended in error" || r.Hosts[1].Phase != PhaseDone {
		t.Fatalf("rollout: %+v", r)
	}
}

func TestRolloutPauseResumeCancelContinue(t *testing.T) {
	s := opState(t)
	must(t, s.Apply(newRollout("r1", 1, OnFailureStop, "a", "b"), 2))
	must(t, s.Apply(&RolloutControl{Rollout: "r1", Action: RolloutPause, Time: t0}, 3))
	wantCode(t, s.Apply(step("r1", "a", PhasePending, PhaseEntering), 4), 409)
	must(t, s.Apply(&RolloutControl{Rollout: "r1", Action: RolloutResume, Time: t0}, 5))
	must(t, s.Apply(step("r1", "a", PhasePending, PhaseEntering), 6))
	// continue is for a host in its work phase only.
	wantCode(t, s.Apply(&RolloutContinue{Rollout: "r1", Host: "a", Time: t0}, 7), 409)
	wantCode(t, s.Apply(&RolloutContinue{Rollout: "r1", Host: "zz", Time: t0}, 7), 404)
	must(t, s.Apply(step("r1", "a", PhaseEntering, PhaseWorking), 8))
	must(t, s.Apply(&RolloutContinue{Rollout: "r1", Host: "a", Time: t0}, 9))
	if !s.Rollouts["r1"].Hosts[0].Continued || !s.RolloutWorking("a") || s.RolloutWorking("b") {
		t.Fatal("continue not recorded, or working hosts wrong")
	}
	must(t, s.Apply(&RolloutControl{Rollout: "r1", Action: RolloutCancel, Time: t0}, 10))
	// Cancelled: a stays out until it is back; b never starts.
	r := s.Rollouts["r1"]
	if r.State.Terminal() || !r.Stopping {
		t.Fatalf("cancel with a host out: %+v", r)
	}
	wantCode(t, s.Apply(&RolloutControl{Rollout: "r1", Action: RolloutResume, Time: t0}, 11), 409)
	idx := uint64(12)
	for _, p := range [][2]RolloutPhase{{PhaseWorking, PhaseReturning}, {PhaseReturning, PhaseExiting}, {PhaseExiting, PhaseDone}} {
		must(t, s.Apply(step("r1", "a", p[0], p[1]), idx))
		idx++
	}
	r = s.Rollouts["r1"]
	if r.State != RolloutCancelled || r.Hosts[1].Phase != PhaseSkipped {
		t.Fatalf("rollout: %+v", r)
	}
	wantCode(t, s.Apply(&RolloutControl{Rollout: "r1", Action: RolloutPause, Time: t0}, 20), 409)
}

func TestRolloutCreateRefusesBadInput(t *testing.T) {
	s := opState(t)
	for _, tc := range []struct {
		name  string
		cmd   *CreateRollout
		code  int
		field string
	}{
		{"no hosts", &CreateRollout{Rollout: Rollout{ID: "x", Parallel: 1, OnFailure: OnFailureStop}}, 400, "hosts"},
		{"unknown host", newRollout("x", 1, OnFailureStop, "a", "nope"), 404, "hosts"},
		{"twice", newRollout("x", 1, OnFailureStop, "a", "a"), 400, "hosts"},
		{"parallel", newRollout("x", 0, OnFailureStop, "a"), 400, "parallel"},
		{"on failure", newRollout("x", 1, "retry", "a"), 400, "on_failure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Apply(tc.cmd, 2)
			wantCode(t, err, tc.code)
			if ae := err.(*ApplyError); ae.Field != tc.field {
				t.Fatalf("field %q, want %q", ae.Field, tc.field)
			}
			if len(s.Rollouts) != 0 {
				t.Fatal("a refused rollout was stored")
			}
		})
	}
}

func TestRolloutSurvivesSnapshot(t *testing.T) {
	s := opState(t)
	must(t, s.Apply(newRollout("r1", 1, OnFailureStop, "a", "b"), 2))
	must(t, s.Apply(&RolloutStep{Rollout: "r1", Host: "a", From: PhasePending, To: PhaseEntering, Evacuation: "ev-a", Time: t0.Add(time.Second)}, 3))
	must(t, s.Apply(&RolloutStep{Rollout: "r1", Host: "a", From: PhaseEntering, To: PhaseWorking, HookRun: true, Time: t0.Add(2 * time.Second)}, 4))
	var buf bytes.Buffer
	must(t, WriteState(&buf, s))
	got, err := ReadState(&buf)
	must(t, err)
	h := got.Rollouts["r1"].Hosts[0]
	if h.Phase != PhaseWorking || h.HookRuns != 1 || h.Evacuation != "ev-a" || !h.PhaseSince.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("restored host step: %+v", h)
	}
	// Commands round-trip through the log encoding.
	b, err := Encode(&RolloutStep{Rollout: "r1", Host: "a", From: PhaseWorking, To: PhaseReturning, DownSeen: true, Time: t0})
	must(t, err)
	c, err := Decode(b)
	must(t, err)
	if st, ok := c.(*RolloutStep); !ok || !st.DownSeen || st.To != PhaseReturning {
		t.Fatalf("decoded %#v", c)
	}
}
