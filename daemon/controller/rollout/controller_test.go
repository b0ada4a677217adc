package rollout

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
)

// fakeRaft applies commands to a state, as the FSM would.
type fakeRaft struct {
	mu  sync.Mutex
	st  *cluster.State
	idx uint64
}

func (f *fakeRaft) Apply(_ context.Context, cmd cluster.Command) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.idx++
	return f.st.Apply(cmd, f.idx)
}

func (f *fakeRaft) State() *cluster.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.Snapshot()
}

// fakeMaintenance records the calls; it enters and leaves maintenance at
// once (through the state machine).
type fakeMaintenance struct {
	raft  *fakeRaft
	wait  string
	enter map[string]int
}

func (m *fakeMaintenance) CanEnter(*cluster.State, string, string, bool) (string, error) {
	return m.wait, nil
}

func (m *fakeMaintenance) Enter(ctx context.Context, host, migrate string, force bool, id, why string) error {
	m.enter[host]++
	if err := m.raft.Apply(ctx, &cluster.StartOperation{Op: cluster.Operation{ID: id, Kind: cluster.OpEvacuate, Host: host}}); err != nil {
		return err
	}
	return nil
}

func (m *fakeMaintenance) Exit(ctx context.Context, host string, moveBack bool, id string) error {
	return m.raft.Apply(ctx, &cluster.StartOperation{Op: cluster.Operation{ID: id, Kind: cluster.OpExit, Host: host}})
}

type countingHooks struct {
	mu   sync.Mutex
	runs map[string]int
}

func (h *countingHooks) Run(_ context.Context, _ policy.RolloutHook, env map[string]string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.runs[env["HERD_HOST"]]++
	return "ok", nil
}

type fixedClock struct{ t time.Time }

func (c *fixedClock) Now() time.Time { return c.t }

var t0 = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

func setup(t *testing.T, hosts ...string) (*Controller, *fakeRaft, *fakeMaintenance, *countingHooks, *fixedClock) {
	t.Helper()
	st := cluster.NewState()
	var hs []cluster.Host
	for _, h := range hosts {
		hs = append(hs, cluster.Host{Name: h, Driver: "d", MemoryBytes: 64 << 30, Connection: cluster.Connected})
	}
	if err := st.Apply(&cluster.InventoryDiff{Driver: "d", UpsertHosts: hs}, 1); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if err := st.Apply(&cluster.SetHostHealth{Host: h, Health: cluster.HealthAlive}, 2); err != nil {
			t.Fatal(err)
		}
	}
	raft := &fakeRaft{st: st, idx: 10}
	m := &fakeMaintenance{raft: raft, enter: map[string]int{}}
	hooks := &countingHooks{runs: map[string]int{}}
	clk := &fixedClock{t: t0}
	doc, err := policy.Parse("p", []byte("apiVersion: herd/v1\nkind: Policy\nrollout:\n  hooks: [{name: patch, command: [/bin/true]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := New(Deps{State: raft.State, Policy: func() *policy.Document { return doc }, Apply: raft, Maintenance: m, Hooks: hooks, Clock: clk})
	c.hooks, c.upSince, c.agentSeen = map[string]*hookRun{}, map[string]time.Time{}, map[string]time.Time{}
	return c, raft, m, hooks, clk
}

// TestNewLeaderNeverRepeatsAHostStep: a state where host a is done and
// host b is in its work with its hook started (by a leader since lost): a
// fresh controller finishes the rollout without entering a's or b's
// maintenance again and without running b's hook again; c goes through
// once, with its hook.
func TestNewLeaderNeverRepeatsAHostStep(t *testing.T) {
	c, raft, m, hooks, clk := setup(t, "a", "b", "c")
	ctx := context.Background()
	r := cluster.Rollout{ID: "ro-1", Parallel: 1, OnFailure: cluster.OnFailureStop, Migrate: "all", Hook: "patch", Created: t0,
		Hosts: []cluster.RolloutHost{{Host: "a", Wave: 1}, {Host: "b", Wave: 2}, {Host: "c", Wave: 3}}}
	for _, cmd := range []cluster.Command{
		&cluster.CreateRollout{Rollout: r},
		&cluster.RolloutStep{Rollout: "ro-1", Host: "a", From: cluster.PhasePending, To: cluster.PhaseEntering, Evacuation: "ev-a"},
		&cluster.RolloutStep{Rollout: "ro-1", Host: "a", From: cluster.PhaseEntering, To: cluster.PhaseWorking, HookRun: true},
		&cluster.RolloutStep{Rollout: "ro-1", Host: "a", From: cluster.PhaseWorking, To: cluster.PhaseReturning},
		&cluster.RolloutStep{Rollout: "ro-1", Host: "a", From: cluster.PhaseReturning, To: cluster.PhaseExiting, Exit: "ex-a"},
		&cluster.RolloutStep{Rollout: "ro-1", Host: "a", From: cluster.PhaseExiting, To: cluster.PhaseDone},
		&cluster.StartOperation{Op: cluster.Operation{ID: "ev-b", Kind: cluster.OpEvacuate, Host: "b"}},
		&cluster.RolloutStep{Rollout: "ro-1", Host: "b", From: cluster.PhasePending, To: cluster.PhaseEntering, Evacuation: "ev-b"},
		&cluster.RolloutStep{Rollout: "ro-1", Host: "b", From: cluster.PhaseEntering, To: cluster.PhaseWorking, HookRun: true},
	} {
		if err := raft.Apply(ctx, cmd); err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
	}
	round := func() {
		c.Round(ctx)
		c.wg.Wait() // hooks end before the next round looks
		clk.t = clk.t.Add(10 * time.Second)
	}
	round()
	st := raft.State()
	if h := st.Rollouts["ro-1"].Hosts[1]; h.Phase != cluster.PhaseWorking || h.Note == "" {
		t.Fatalf("b after the new leader's first look: %+v", h)
	}
	if err := raft.Apply(ctx, &cluster.RolloutContinue{Rollout: "ro-1", Host: "b"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20 && !raft.State().Rollouts["ro-1"].State.Terminal(); i++ {
		round()
	}
	got := raft.State().Rollouts["ro-1"]
	if got.State != cluster.RolloutSucceeded {
		t.Fatalf("rollout: %+v", got)
	}
	if m.enter["a"] != 0 || m.enter["b"] != 0 || m.enter["c"] != 1 {
		t.Fatalf("maintenance entered: %v", m.enter)
	}
	if hooks.runs["a"] != 0 || hooks.runs["b"] != 0 || hooks.runs["c"] != 1 {
		t.Fatalf("hook runs: %v", hooks.runs)
	}
}

// gate holds every host step.
type gate struct{ why string }

func (g gate) MayStart(*cluster.Rollout, string, time.Time) (bool, string) { return g.why == "", g.why }

// TestWaitsSayWhy: a closed gate and a host that may not enter maintenance
// yet start nothing, and the rollout says why.
func TestWaitsSayWhy(t *testing.T) {
	for _, tc := range []struct {
		name, gate, canEnter, want string
	}{
		{"window", "window nightly is closed", "", "window nightly is closed"},
		{"failover", "", "failover capacity would drop to 0", "host a waits: failover capacity would drop to 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, raft, m, _, _ := setup(t, "a")
			c.d.Gate = gate{why: tc.gate}
			m.wait = tc.canEnter
			ctx := context.Background()
			r := cluster.Rollout{ID: "ro-1", Parallel: 1, OnFailure: cluster.OnFailureStop, Migrate: "all", Created: t0,
				Hosts: []cluster.RolloutHost{{Host: "a", Wave: 1}}}
			if err := raft.Apply(ctx, &cluster.CreateRollout{Rollout: r}); err != nil {
				t.Fatal(err)
			}
			c.Round(ctx)
			got := raft.State().Rollouts["ro-1"]
			if got.Note != tc.want || got.Hosts[0].Phase != cluster.PhasePending || m.enter["a"] != 0 {
				t.Fatalf("note %q, phase %s, entered %d", got.Note, got.Hosts[0].Phase, m.enter["a"])
			}
		})
	}
}

// failingMaintenance starts evacuations whose one VM fails every attempt.
type failingMaintenance struct{ *fakeMaintenance }

func (m failingMaintenance) Enter(ctx context.Context, host, migrate string, force bool, id, why string) error {
	m.enter[host]++
	op := cluster.Operation{ID: id, Kind: cluster.OpEvacuate, Host: host, MaxAttempts: 1,
		Items: []cluster.OpItem{{VM: "vm-1", Name: "db-1", Action: cluster.ActionLiveMigrate, From: host}}}
	for _, cmd := range []cluster.Command{
		&cluster.StartOperation{Op: op},
		&cluster.StartItem{Op: id, VM: "vm-1", Target: "b"},
		&cluster.FinishItem{Op: id, VM: "vm-1", Error: "migration refused"},
	} {
		if err := m.raft.Apply(ctx, cmd); err != nil {
			return err
		}
	}
	return nil
}

// TestEvacuationErrorStopsTheRollout: a host whose evacuation ends in
// error is left in maintenance and named; on_failure stop starts no other
// host and the rollout fails naming it.
func TestEvacuationErrorStopsTheRollout(t *testing.T) {
	c, raft, m, _, _ := setup(t, "a", "b")
	c.d.Maintenance = failingMaintenance{m}
	ctx := context.Background()
	if err := raft.Apply(ctx, &cluster.InventoryDiff{Driver: "d", UpsertVMs: []cluster.VM{{ID: "vm-1", Name: "db-1", Host: "a", Driver: "d", Power: cluster.PoweredOn}}}); err != nil {
		t.Fatal(err)
	}
	r := cluster.Rollout{ID: "ro-1", Parallel: 1, OnFailure: cluster.OnFailureStop, Migrate: "all", Created: t0,
		Hosts: []cluster.RolloutHost{{Host: "a", Wave: 1}, {Host: "b", Wave: 2}}}
	if err := raft.Apply(ctx, &cluster.CreateRollout{Rollout: r}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		c.Round(ctx)
	}
	st := raft.State()
	got := st.Rollouts["ro-1"]
	if got.State != cluster.RolloutFailed || got.Hosts[0].Phase != cluster.PhaseFailed || got.Hosts[1].Phase != cluster.PhaseSkipped {
		t.Fatalf("rollout: %+v", got)
	}
	if !strings.Contains(got.Error, "host a failed") || !strings.Contains(got.Hosts[0].Error, "left in maintenance") {
		t.Fatalf("error %q, host error %q", got.Error, got.Hosts[0].Error)
	}
	if h := st.Hosts["a"]; h.Maintenance != cluster.MaintenanceError {
		t.Fatalf("host a: maintenance %s", h.Maintenance)
	}
	if m.enter["b"] != 0 {
		t.Fatal("b entered maintenance after a failed")
	}
}

type failingHooks struct{ countingHooks }

func (h *failingHooks) Run(ctx context.Context, hook policy.RolloutHook, env map[string]string) (string, error) {
	h.countingHooks.Run(ctx, hook, env)
	return "yum: no space left", errors.New("exit status 1")
}

// TestHookFailureSkips: a hook that fails leaves its host in maintenance,
// named with the hook's output; on_failure skip goes on with the next host.
func TestHookFailureSkips(t *testing.T) {
	c, raft, _, _, clk := setup(t, "a", "b")
	hooks := &failingHooks{countingHooks{runs: map[string]int{}}}
	c.d.Hooks = hooks
	ctx := context.Background()
	r := cluster.Rollout{ID: "ro-1", Parallel: 1, OnFailure: cluster.OnFailureSkip, Migrate: "all", Hook: "patch", Created: t0,
		Hosts: []cluster.RolloutHost{{Host: "a", Wave: 1}, {Host: "b", Wave: 2}}}
	if err := raft.Apply(ctx, &cluster.CreateRollout{Rollout: r}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10 && !raft.State().Rollouts["ro-1"].State.Terminal(); i++ {
		c.Round(ctx)
		c.wg.Wait()
		clk.t = clk.t.Add(10 * time.Second)
	}
	st := raft.State()
	got := st.Rollouts["ro-1"]
	if got.State != cluster.RolloutFailed || got.Hosts[0].Phase != cluster.PhaseFailed || got.Hosts[1].Phase != cluster.PhaseFailed {
		t.Fatalf("rollout: %+v", got)
	}
	if hooks.runs["a"] != 1 || hooks.runs["b"] != 1 || !strings.Contains(got.Hosts[0].Error, "hook patch: exit status 1") {
		t.Fatalf("runs %v, error %q", hooks.runs, got.Hosts[0].Error)
	}
	if st.Hosts["a"].Maintenance != cluster.MaintenanceOn {
		t.Fatalf("host a: %s", st.Hosts["a"].Maintenance)
	}
	found := false
	for _, e := range st.Events {
		found = found || e.Type == "rollout.hook_failed" && strings.Contains(e.Message, "no space left")
	}
	if !found {
		t.Fatal("the hook's output is not in the event log")
	}
}
