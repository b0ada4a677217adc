package plan

import (
	"slices"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/placement"
)

// TestDueRecoveries: the pending recreations tried in a round, in priority
// order. One whose backoff is over takes the higher ones along, so that
// room that appears goes to the highest priority first; running ones and
// those only behind it in backoff wait.
func TestDueRecoveries(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	r := policy.RecoveryPolicy{RetryBackoff: time.Second, MaxBackoff: 8 * time.Second}
	item := func(vm string, state cluster.ItemState, attempts int, ago time.Duration) cluster.OpItem {
		return cluster.OpItem{VM: vm, State: state, Attempts: attempts, Finished: now.Add(-ago)}
	}
	pending := cluster.ItemPending
	tests := []struct {
		name    string
		items   []cluster.OpItem
		running string
		want    []string
	}{
		{"first round", []cluster.OpItem{item("hi", pending, 0, 0), item("lo", pending, 0, 0)}, "", []string{"hi", "lo"}},
		{"all in backoff", []cluster.OpItem{item("hi", pending, 3, time.Second), item("lo", pending, 1, 0)}, "", nil},
		// hi failed more often (4 s backoff), lo's 1 s is over: hi goes first.
		{"a lower one due takes the higher along", []cluster.OpItem{item("hi", pending, 3, 2*time.Second), item("lo", pending, 1, 2*time.Second)}, "", []string{"hi", "lo"}},
		{"a higher one due leaves the lower in backoff", []cluster.OpItem{item("hi", pending, 1, 2*time.Second), item("lo", pending, 3, 2*time.Second)}, "", []string{"hi"}},
		{"done, failed and running ones are left out", []cluster.OpItem{item("done", cluster.ItemDone, 1, 0), item("run", pending, 1, time.Hour), item("hi", pending, 3, 0), item("lo", pending, 0, 0)}, "run", []string{"hi", "lo"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, it := range DueRecoveries(tt.items, func(it cluster.OpItem) bool { return it.VM == tt.running }, now, r) {
				got = append(got, it.VM)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("due %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRecoveryBackoff: the pause after each failed recreation doubles from
// retry_backoff up to max_backoff.
func TestRecoveryBackoff(t *testing.T) {
	r := policy.RecoveryPolicy{RetryBackoff: time.Second, MaxBackoff: 5 * time.Second}
	for attempts, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 5 * time.Second, 10: 5 * time.Second} {
		if got := r.Backoff(attempts); got != want {
			t.Errorf("Backoff(%d) = %s, want %s", attempts, got, want)
		}
	}
	if got := (policy.RecoveryPolicy{RetryBackoff: 10 * time.Second, MaxBackoff: 3 * time.Second}).Backoff(1); got != 3*time.Second {
		t.Errorf("a retry backoff above the maximum: %s, want the maximum", got)
	}
}

// TestEvacuationItems: a precheck's moves and shutdowns become one step
// each, from the host, with their action, in evacuation order (Order);
// VMs the state no longer has are left out.
func TestEvacuationItems(t *testing.T) {
	st := cluster.NewState()
	st.VMs["big"] = &cluster.VM{ID: "big", Name: "big", Host: "h1", MemoryBytes: 8 << 30, Priority: 10}
	st.VMs["small"] = &cluster.VM{ID: "small", Name: "small", Host: "h1", MemoryBytes: 1 << 30, Priority: 10}
	st.VMs["off"] = &cluster.VM{ID: "off", Name: "off", Host: "h1", MemoryBytes: 2 << 30}
	pc := placement.Precheck{
		LiveMigrate:    []placement.Item{{VM: "small", Action: cluster.ActionLiveMigrate}, {VM: "big", Action: cluster.ActionLiveMigrate}, {VM: "gone", Action: cluster.ActionLiveMigrate}},
		OfflineMigrate: []placement.Item{{VM: "off", Action: cluster.ActionOfflineMigrate}},
	}
	items := EvacuationItems(st, "h1", pc)
	want := []*cluster.VM{st.VMs["small"], st.VMs["big"], st.VMs["off"]}
	placement.Order(want)
	if len(items) != len(want) {
		t.Fatalf("%d items, want %d: %+v", len(items), len(want), items)
	}
	for i, it := range items {
		vm := want[i]
		wantAction := cluster.ActionLiveMigrate
		if vm.ID == "off" {
			wantAction = cluster.ActionOfflineMigrate
		}
		if it.VM != vm.ID || it.Name != vm.Name || it.From != "h1" || it.Action != wantAction || it.MemoryBytes != vm.MemoryBytes || it.Priority != vm.Priority {
			t.Errorf("item %d: %+v, want VM %s (%s) from h1", i, it, vm.ID, wantAction)
		}
	}
}
