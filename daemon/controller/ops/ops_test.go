package ops

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/controller/controllertest"
	"github.com/herd-project/herd/daemon/controller/inventory"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/drivers/vsphere"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/metrics"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/placement"
	"github.com/herd-project/herd/policy/plan"
)

// fakeRaft applies commands to a state at once, as the FSM would, and
// keeps every command it applied. hold, when set, runs before a command
// is applied (a slow commit).
type fakeRaft struct {
	controllertest.Store
	idx   uint64
	cmds  []cluster.Command
	watch []chan<- uint64
	hold  func(ctx context.Context, cmd cluster.Command) error
}

func (f *fakeRaft) Apply(ctx context.Context, cmd cluster.Command) (uint64, error) {
	if f.hold != nil {
		if err := f.hold(ctx, cmd); err != nil {
			return 0, err
		}
	}
	f.Mu.Lock()
	f.idx++
	idx := f.idx
	err := f.St.Apply(cmd, idx)
	if err == nil {
		f.cmds = append(f.cmds, cmd)
	}
	watch := f.watch
	f.Mu.Unlock()
	for _, ch := range watch {
		select {
		case ch <- idx:
		default:
		}
	}
	return idx, err
}

func (f *fakeRaft) Watch(ch chan<- uint64) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.watch = append(f.watch, ch)
}

// steps counts the StartItem and FinishItem commands applied for each VM.
func (f *fakeRaft) steps() (starts, finishes map[string]int) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	starts, finishes = map[string]int{}, map[string]int{}
	for _, cmd := range f.cmds {
		switch c := cmd.(type) {
		case *cluster.StartItem:
			starts[c.VM]++
		case *cluster.FinishItem:
			finishes[c.VM]++
		}
	}
	return starts, finishes
}

// countingDriver is the simulator's vSphere driver, counting migrations.
type countingDriver struct {
	drivers.Driver
	mu    sync.Mutex
	moves map[string]int
}

func (d *countingDriver) Migrate(ctx context.Context, id, target string, kind drivers.MigrationKind) error {
	d.mu.Lock()
	d.moves[id]++
	d.mu.Unlock()
	return d.Driver.Migrate(ctx, id, target, kind)
}

func (d *countingDriver) migrations(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.moves[id]
}

type oneDriver struct{ d drivers.Driver }

func (o oneDriver) Get(context.Context, string) (drivers.Driver, error) { return o.d, nil }

const driverName = "sim"

// setup is a vSphere simulator of 3 hosts and 6 VMs, its inventory in a
// fake raft's state (every host alive), and an operations controller over
// them.
func setup(t *testing.T) (*Controller, *fakeRaft, *countingDriver) {
	t.Helper()
	sim, err := vsphere.StartSimulator(vsphere.SimConfig{Hosts: 3, VMs: 6})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	ctx := context.Background()
	d, err := vsphere.New(ctx, sim.Config(), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	inv, err := d.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := cluster.NewState()
	raft := &fakeRaft{Store: controllertest.Store{St: st}}
	if _, err := raft.Apply(ctx, inventory.Diff(driverName, st, inv, time.Now())); err != nil {
		t.Fatal(err)
	}
	for _, h := range inv.Hosts {
		if _, err := raft.Apply(ctx, &cluster.SetHostHealth{Host: h.Name, Health: cluster.HealthAlive}); err != nil {
			t.Fatal(err)
		}
	}
	doc, err := policy.Parse("p", []byte("apiVersion: herd/v1\nkind: Policy\n"))
	if err != nil {
		t.Fatal(err)
	}
	cd := &countingDriver{Driver: d, moves: map[string]int{}}
	c := New(Deps{State: raft, Raft: raft, Drivers: oneDriver{cd}, Policy: func() *policy.Document { return doc },
		Options: func(doc *policy.Document, st *cluster.State, perTarget int) placement.Options {
			return placement.Options{MaxInFlightTo: perTarget, Policy: placement.Compile(doc, st)}
		},
		Self: "s1", InventoryTimeout: 10 * time.Second, Metrics: metrics.New(prometheus.NewRegistry(), metrics.Sources{}), Log: testutil.Logger(t)})
	return c, raft, cd
}

// evacuate records the evacuation of host (every VM moves) as the API
// would, and returns it.
func evacuate(t *testing.T, c *Controller, raft *fakeRaft, host string) *cluster.Operation {
	t.Helper()
	st := raft.State()
	er := placement.EvacuationRequest{Host: host, Migrate: placement.MigrateAll}
	l, o := c.Planning(st)
	pc := placement.PrecheckEvacuation(st, l, er, o)
	if !pc.OK() {
		t.Fatalf("precheck of %s: %+v", host, pc.Blockers)
	}
	op := cluster.Operation{ID: "op-1", Kind: cluster.OpEvacuate, Host: host, Migrate: string(er.Migrate), Actor: "test",
		Created: time.Now().UTC(), Items: plan.EvacuationItems(st, host, pc)}
	if len(op.Items) == 0 {
		t.Fatalf("host %s has nothing to evacuate", host)
	}
	if _, err := raft.Apply(context.Background(), &cluster.StartOperation{Op: op}); err != nil {
		t.Fatal(err)
	}
	return raft.State().Operations[op.ID]
}

// busiest is the host with the most VMs.
func busiest(st *cluster.State) string {
	n := map[string]int{}
	best := ""
	for _, vm := range st.VMs {
		n[vm.Host]++
		if best == "" || n[vm.Host] > n[best] || n[vm.Host] == n[best] && vm.Host < best {
			best = vm.Host
		}
	}
	return best
}

// lead runs c as the leader until the returned stop is called, or the
// test ends. stop ends its Run (leadership lost) and waits for it, a
// bounded time: a controller stuck on its own lock fails the test.
func lead(t *testing.T, c *Controller) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Error("the controller did not stop within 30s of losing leadership")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// run runs c as a leader until op ends, and returns op as it ended.
func run(t *testing.T, c *Controller, raft *fakeRaft, op string) *cluster.Operation {
	t.Helper()
	stop := lead(t, c)
	defer stop()
	var end *cluster.Operation
	testutil.WaitFor(t, 60*time.Second, "operation "+op+" ends", func() bool {
		end = raft.State().Operations[op]
		return end != nil && end.State.Terminal()
	})
	return end
}

// holdStarts holds every StartItem at its raft write until release is
// called (a slow commit, a lagging follower); first gets the first start
// held. The test's end releases them.
func (f *fakeRaft) holdStarts(t *testing.T) (first <-chan *cluster.StartItem, release func()) {
	held, released := make(chan *cluster.StartItem, 1), make(chan struct{})
	var once, releaseOnce sync.Once
	f.hold = func(ctx context.Context, cmd cluster.Command) error {
		if si, ok := cmd.(*cluster.StartItem); ok {
			once.Do(func() { held <- si })
			select {
			case <-released:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	release = func() { releaseOnce.Do(func() { close(released) }) }
	t.Cleanup(release)
	return held, release
}

// firstStart waits for the first start held.
func firstStart(t *testing.T, first <-chan *cluster.StartItem) *cluster.StartItem {
	t.Helper()
	select {
	case si := <-first:
		return si
	case <-time.After(20 * time.Second):
		t.Fatal("no step started")
		return nil
	}
}

// TestEachStepIsAppliedOnce: an evacuation run against a fake raft and
// the vSphere simulator records each VM's step once started and once
// finished, and migrates each VM once, to the target it recorded.
func TestEachStepIsAppliedOnce(t *testing.T) {
	c, raft, d := setup(t)
	op := evacuate(t, c, raft, busiest(raft.State()))
	end := run(t, c, raft, op.ID)
	if end.State != cluster.OpSucceeded {
		t.Fatalf("evacuation ended %s: %+v", end.State, end)
	}
	inv, err := d.Inventory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	starts, finishes := raft.steps()
	for _, it := range end.Items {
		if starts[it.VM] != 1 || finishes[it.VM] != 1 {
			t.Errorf("VM %s: %d starts and %d finishes recorded, want one of each", it.Name, starts[it.VM], finishes[it.VM])
		}
		if n := d.migrations(it.VM); n != 1 {
			t.Errorf("VM %s migrated %d times, want once", it.Name, n)
		}
		if copies := inv.Copies(it.VM); len(copies) != 1 || copies[0].Host != it.Target || it.Target == op.Host {
			t.Errorf("VM %s is on %+v, want only on its recorded target %s (not %s)", it.Name, copies, it.Target, op.Host)
		}
	}
}

// TestNewLeaderResumesWithoutRepeating: a previous leader recorded two
// steps as started and was lost; one had finished on the hypervisor, the
// other had not begun. A new controller records the first as done
// without migrating it again, drives the second toward the target it
// recorded, and records no step as started again.
func TestNewLeaderResumesWithoutRepeating(t *testing.T) {
	c, raft, d := setup(t)
	ctx := context.Background()
	op := evacuate(t, c, raft, busiest(raft.State()))
	if len(op.Items) < 2 {
		t.Fatalf("want two steps, have %+v", op.Items)
	}
	st := raft.State()
	var targets []string
	for _, h := range st.Hosts {
		if h.Name != op.Host {
			targets = append(targets, h.Name)
		}
	}
	finished, lost := op.Items[0], op.Items[1]
	for i, it := range []cluster.OpItem{finished, lost} {
		if _, err := raft.Apply(ctx, &cluster.StartItem{Op: op.ID, VM: it.VM, Target: targets[i], Time: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
	}
	kind := drivers.Live
	if finished.Action == cluster.ActionOfflineMigrate {
		kind = drivers.Offline
	}
	// The previous leader's call for the first step went through.
	if err := d.Driver.Migrate(ctx, finished.VM, targets[0], kind); err != nil {
		t.Fatal(err)
	}
	startsBefore, _ := raft.steps()

	end := run(t, c, raft, op.ID)
	if end.State != cluster.OpSucceeded {
		t.Fatalf("evacuation ended %s: %+v", end.State, end)
	}
	starts, finishes := raft.steps()
	for _, it := range []cluster.OpItem{finished, lost} {
		if starts[it.VM] != startsBefore[it.VM] || finishes[it.VM] != 1 {
			t.Errorf("VM %s: %d starts (had %d) and %d finishes; a resumed step is not started again and finishes once", it.Name, starts[it.VM], startsBefore[it.VM], finishes[it.VM])
		}
	}
	if n := d.migrations(finished.VM); n != 0 {
		t.Errorf("the finished step's VM %s was migrated again (%d times)", finished.Name, n)
	}
	if n := d.migrations(lost.VM); n != 1 {
		t.Errorf("the step that had not begun migrated %d times, want once", n)
	}
	inv, err := d.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range []cluster.OpItem{finished, lost} {
		if copies := inv.Copies(it.VM); len(copies) != 1 || copies[0].Host != targets[i] {
			t.Errorf("VM %s is on %+v, want only on the target its start recorded, %s", it.Name, copies, targets[i])
		}
	}
	resumed := false
	raft.Read(func(st *cluster.State) {
		for _, e := range st.Events {
			resumed = resumed || e.Type == "operation.resumed" && strings.Contains(e.Message, "steps in flight: 2,")
		}
	})
	if !resumed {
		t.Error("no operation.resumed event naming the 2 steps in flight")
	}
}

// TestNeverHoldsItsLockAcrossACommit: while a step's start waits for its
// raft write, what reads the controller (the in-flight count, a
// precheck's planning) answers at once, and the evacuation completes once
// the writes go through.
func TestNeverHoldsItsLockAcrossACommit(t *testing.T) {
	c, raft, _ := setup(t)
	first, release := raft.holdStarts(t)
	op := evacuate(t, c, raft, busiest(raft.State()))
	lead(t, c)
	firstStart(t, first)
	answered := make(chan struct{})
	go func() {
		c.InFlight()
		c.Planning(raft.State())
		close(answered)
	}()
	select {
	case <-answered:
	case <-time.After(5 * time.Second):
		t.Fatal("the in-flight count and a precheck's planning waited for a step's raft write")
	}
	release()
	testutil.WaitFor(t, 60*time.Second, "the evacuation succeeds", func() bool {
		end := raft.State().Operations[op.ID]
		return end.State == cluster.OpSucceeded
	})
}

// TestRefusedStartIsNotDriven: an operation cancelled while a step's
// start waits for its raft write refuses the start, and the step's VM is
// not moved: nothing acts on a step that raft did not record as started.
func TestRefusedStartIsNotDriven(t *testing.T) {
	c, raft, d := setup(t)
	held, release := raft.holdStarts(t)
	op := evacuate(t, c, raft, busiest(raft.State()))
	lead(t, c)
	first := firstStart(t, held)
	if _, err := raft.Apply(context.Background(), &cluster.CancelOperation{Op: op.ID, Time: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	release()
	testutil.WaitFor(t, 30*time.Second, "the cancelled operation ends, no step in flight", func() bool {
		return raft.State().Operations[op.ID].State.Terminal() && c.InFlight() == 0
	})
	if n := d.migrations(first.VM); n != 0 {
		t.Fatalf("VM %s migrated %d times though its start was refused", first.VM, n)
	}
}
