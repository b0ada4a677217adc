package daemon

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy/failover"
	"github.com/herd-project/herd/policy/placement"
)

// The failover capacity the scrape shows is always that of the state it
// reads: after random VM changes (power, host, size, removal), host
// changes (admin status, health, memory, group, connection), events that
// change neither, memory reserves and restored snapshots, the cached
// capacity is the one computed afresh from the whole state.
func TestFailoverCacheIsTheStatesCapacity(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 17))
	f := cluster.NewFSM(nil)
	index := uint64(0)
	apply := func(c cluster.Command) {
		t.Helper()
		b, err := cluster.Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		index++
		f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: b}) // refused commands change nothing
	}
	const gib = int64(1) << 30
	host := func(i int) cluster.Host {
		return cluster.Host{Name: fmt.Sprintf("h%d", i), Group: fmt.Sprintf("g%d", r.IntN(2)), MemoryBytes: (32 + 32*r.Int64N(3)) * gib, CPUs: 64,
			Connection: []cluster.Connection{cluster.Connected, cluster.Connected, cluster.Connected, cluster.NotResponding}[r.IntN(4)]}
	}
	var hosts []cluster.Host
	for i := range 6 {
		hosts = append(hosts, host(i))
	}
	apply(&cluster.InventoryDiff{Driver: "dc", UpsertHosts: hosts})
	var c failoverCache
	var snapshot bytes.Buffer
	reserve := 0.0
	for step := range 600 {
		switch k := r.IntN(10); {
		case k < 4:
			vm := cluster.VM{ID: fmt.Sprintf("vm%02d", r.IntN(40)), Host: fmt.Sprintf("h%d", r.IntN(6)), MemoryBytes: (1 + r.Int64N(16)) * gib, VCPUs: 2,
				Power: []cluster.PowerState{cluster.PoweredOn, cluster.PoweredOn, cluster.PoweredOff}[r.IntN(3)]}
			apply(&cluster.InventoryDiff{Driver: "dc", UpsertVMs: []cluster.VM{vm}})
		case k == 4:
			apply(&cluster.InventoryDiff{Driver: "dc", RemoveVMs: []string{fmt.Sprintf("vm%02d", r.IntN(40))}})
		case k == 5:
			apply(&cluster.InventoryDiff{Driver: "dc", UpsertHosts: []cluster.Host{host(r.IntN(6))}})
		case k == 6:
			st := []cluster.AdminStatus{cluster.Available, cluster.NotAccepting, cluster.Offline}[r.IntN(3)]
			apply(&cluster.SetHostStatus{Host: fmt.Sprintf("h%d", r.IntN(6)), Status: st, ConfirmFenced: st == cluster.Offline && r.IntN(2) == 0})
			apply(&cluster.SetHostHealth{Host: fmt.Sprintf("h%d", r.IntN(6)), Health: []cluster.Health{cluster.HealthAlive, cluster.HealthSuspect, cluster.HealthDead}[r.IntN(3)]})
		case k == 7:
			apply(&cluster.AppendEvents{Events: []cluster.Event{cluster.NewEvent("note", "test", "h1", "", "nothing changes")}})
		case k == 8:
			reserve = []float64{0, 0.1, 0.5}[r.IntN(3)]
		default:
			if snapshot.Len() > 0 && r.IntN(2) == 0 {
				if err := f.Restore(io.NopCloser(bytes.NewReader(snapshot.Bytes()))); err != nil {
					t.Fatal(err)
				}
				index = f.Index()
			} else {
				snapshot.Reset()
				if err := cluster.WriteState(&snapshot, f.State()); err != nil {
					t.Fatal(err)
				}
			}
		}
		f.ReadWithUsage(func(st *cluster.State, u *cluster.Usage) {
			got := c.get(reserve, st, u)
			if want := failover.Capacity(st, placement.Options{MemoryReserve: reserve}); got != want {
				t.Fatalf("step %d: cached capacity %d, the state's %d", step, got, want)
			}
		})
	}
}

// A restored snapshot brings its own usage: one that has seen as many
// changes to running VMs as the one it replaces still gives its own
// capacity.
func TestFailoverCacheAfterRestore(t *testing.T) {
	const gib = int64(1) << 30
	hosts := []cluster.Host{{Name: "a", Group: "g", MemoryBytes: 64 * gib, Connection: cluster.Connected},
		{Name: "b", Group: "g", MemoryBytes: 64 * gib, Connection: cluster.Connected}}
	// Before: one small VM, either host can fail. The snapshot: one VM
	// that fits on no other host, none can.
	before, snap := cluster.NewState(), cluster.NewState()
	before.Apply(&cluster.InventoryDiff{Driver: "dc", UpsertHosts: hosts,
		UpsertVMs: []cluster.VM{{ID: "small", Host: "a", MemoryBytes: gib, Power: cluster.PoweredOn}}}, 1)
	snap.Apply(&cluster.InventoryDiff{Driver: "dc", UpsertHosts: hosts,
		UpsertVMs: []cluster.VM{{ID: "large", Host: "b", MemoryBytes: 100 * gib, Power: cluster.PoweredOn}}}, 1)
	f := cluster.NewFSM(nil)
	var c failoverCache
	capacity := func() (got int) {
		f.ReadWithUsage(func(st *cluster.State, u *cluster.Usage) { got = c.get(0, st, u) })
		return got
	}
	for i, st := range []*cluster.State{before, snap} {
		var buf bytes.Buffer
		if err := cluster.WriteState(&buf, st); err != nil {
			t.Fatal(err)
		}
		if err := f.Restore(io.NopCloser(&buf)); err != nil {
			t.Fatal(err)
		}
		if got, want := capacity(), failover.Capacity(st, placement.Options{}); got != want {
			t.Fatalf("restore %d: cached capacity %d, the state's %d", i, got, want)
		}
	}
}
