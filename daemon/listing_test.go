package daemon

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
