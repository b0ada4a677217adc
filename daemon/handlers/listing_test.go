package handlers

import (
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
)

// TestNotFencedReason: a dead host says why it is not fenced, in the order
// the recovery controller decides; a host that is not dead says nothing.
func TestNotFencedReason(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	state := func(health map[string]cluster.Health, vms int, failure string) *cluster.State {
		st := cluster.NewState()
		for name, h := range health {
			st.Hosts[name] = &cluster.Host{Name: name, Health: h, DownSince: now.Add(-time.Second)}
		}
		st.Hosts["a"].FenceFailure = failure
		for i := range vms {
			id := string(rune('p' + i))
			st.VMs[id] = &cluster.VM{ID: id, Host: "a", Power: cluster.PoweredOn}
		}
		return st
	}
	alive, dead, suspect := cluster.HealthAlive, cluster.HealthDead, cluster.HealthSuspect
	five := func(b, c cluster.Health) map[string]cluster.Health {
		return map[string]cluster.Health{"a": dead, "b": b, "c": c, "d": alive, "e": alive}
	}
	manual := policy.Default()
	manual.Recovery.Automatic = false
	tests := []struct {
		name string
		doc  *policy.Document
		st   *cluster.State
		want string
	}{
		{"alive", policy.Default(), state(map[string]cluster.Health{"a": alive}, 1, ""), ""},
		{"no VMs", policy.Default(), state(five(alive, alive), 0, ""), "no VMs"},
		{"automatic off", manual, state(five(alive, alive), 1, ""), "automatic recovery is off"},
		{"storm", policy.Default(), state(five(dead, dead), 1, ""), "storm guard: 3 of 5 hosts look dead"},
		{"fencing failed", policy.Default(), state(five(alive, alive), 1, "ipmi (power): timed out"), "fencing failed: ipmi (power): timed out"},
		{"held for suspects", policy.Default(), state(five(suspect, suspect), 1, ""), "fencing waits: 2 other hosts are suspect"},
		{"under way", policy.Default(), state(five(alive, alive), 1, ""), "fencing under way"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := newListing(tt.doc, tt.st, now).host(tt.st.Hosts["a"], true).NotFenced
			if (tt.want == "") != (got == "") || !strings.HasPrefix(got, tt.want) {
				t.Errorf("not fenced because %q, want %q", got, tt.want)
			}
		})
	}
}

// TestActionsOnAStaleCopyAreRefused: a request naming a stale copy
// recorded under an id of its own (before recovery kept ids, or from a
// driver that could not) is refused with 409 and says what it is; an id
// shared with its VM names the VM.
func TestActionsOnAStaleCopyAreRefused(t *testing.T) {
	st := cluster.NewState()
	st.VMs["new"] = &cluster.VM{ID: "new", Name: "web", Host: "b"}
	st.VMs["same"] = &cluster.VM{ID: "same", Name: "db", Host: "b"}
	st.StaleCopies[cluster.StaleKey("a", "old")] = &cluster.StaleCopy{VM: "new", ID: "old", Name: "web", Host: "a"}
	st.StaleCopies[cluster.StaleKey("a", "same")] = &cluster.StaleCopy{VM: "same", ID: "same", Name: "db", Host: "a"}
	_, ferr := findVMByRef(st, "old")
	if ferr == nil || ferr.Code != 409 || ferr.Field != "vm" || !strings.Contains(ferr.Msg, "stale copy of VM web (new) on host a") {
		t.Errorf("ref to a stale copy: %+v, want a 409 saying what it is", ferr)
	}
	for ref, want := range map[string]string{"same": "same", "db": "same", "web": "new"} {
		if vm, ferr := findVMByRef(st, ref); ferr != nil || vm.ID != want {
			t.Errorf("ref %q: %+v, %+v; want VM %s", ref, vm, ferr, want)
		}
	}
}
