package policy

import (
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
)

func TestFuseHealth(t *testing.T) {
	p := HealthPolicy{SuspectAfter: 5 * time.Second, DeadAfter: 30 * time.Second, AliveAfter: 10 * time.Second}
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	good := HealthSignals{Connected: true}
	down := HealthSignals{Connected: false}
	// step is one observation: seconds since t0 and the signals.
	type step struct {
		at   int
		sig  HealthSignals
		want cluster.Health
	}
	tests := []struct {
		name  string
		start cluster.Health
		steps []step
	}{
		{"unknown becomes alive at once", "", []step{{0, good, cluster.HealthAlive}}},
		{"suspect, then dead", cluster.HealthAlive, []step{
			{0, down, cluster.HealthAlive}, {4, down, cluster.HealthAlive}, {5, down, cluster.HealthSuspect},
			{29, down, cluster.HealthSuspect}, {30, down, cluster.HealthDead}}},
		{"a flap below suspect_after changes nothing", cluster.HealthAlive, []step{
			{0, down, cluster.HealthAlive}, {3, good, cluster.HealthAlive}, {4, down, cluster.HealthAlive},
			{8, down, cluster.HealthAlive}, {9, good, cluster.HealthAlive}}},
		{"comes back only after alive_after", cluster.HealthAlive, []step{
			{0, down, cluster.HealthAlive}, {31, down, cluster.HealthDead}, {32, good, cluster.HealthDead},
			{41, good, cluster.HealthDead}, {42, good, cluster.HealthAlive}}},
		{"a bad moment restarts the alive clock", cluster.HealthSuspect, []step{
			{0, good, cluster.HealthSuspect}, {9, down, cluster.HealthSuspect}, {10, good, cluster.HealthSuspect},
			{19, good, cluster.HealthSuspect}, {20, good, cluster.HealthAlive}}},
		{"agent alive: manager link lost is suspect, never dead", cluster.HealthAlive, []step{
			{0, HealthSignals{Connected: false, Agent: "alive"}, cluster.HealthAlive},
			{6, HealthSignals{Connected: false, Agent: "alive"}, cluster.HealthSuspect},
			{300, HealthSignals{Connected: false, Agent: "alive"}, cluster.HealthSuspect}}},
		{"agent dead and manager lost: dead", cluster.HealthAlive, []step{
			{0, HealthSignals{Connected: false, Agent: "dead"}, cluster.HealthAlive},
			{30, HealthSignals{Connected: false, Agent: "dead"}, cluster.HealthDead}}},
		{"agent lost, manager connected: suspect, never dead", cluster.HealthAlive, []step{
			{0, HealthSignals{Connected: true, Agent: "dead"}, cluster.HealthAlive},
			{6, HealthSignals{Connected: true, Agent: "dead"}, cluster.HealthSuspect},
			{300, HealthSignals{Connected: true, Agent: "dead"}, cluster.HealthSuspect}}},
		{"the two paths lost one after the other: not dead until both are lost for dead_after", cluster.HealthAlive, []step{
			{0, HealthSignals{Connected: true, Agent: "dead"}, cluster.HealthAlive},
			{40, HealthSignals{Connected: true, Agent: "dead"}, cluster.HealthSuspect},
			{41, HealthSignals{Connected: false, Agent: "dead"}, cluster.HealthSuspect},
			{43, HealthSignals{Connected: true, Agent: "dead"}, cluster.HealthSuspect},
			{50, HealthSignals{Connected: false, Agent: "dead"}, cluster.HealthSuspect},
			{79, HealthSignals{Connected: false, Agent: "dead"}, cluster.HealthSuspect},
			{80, HealthSignals{Connected: false, Agent: "dead"}, cluster.HealthDead}}},
		{"lease expired: dead even if the agent answers gossip", cluster.HealthAlive, []step{
			{0, HealthSignals{Connected: false, Agent: "alive"}, cluster.HealthAlive},
			{6, HealthSignals{Connected: false, Agent: "alive"}, cluster.HealthSuspect},
			{31, HealthSignals{Connected: false, Agent: "alive", LeaseExpired: true}, cluster.HealthDead}}},
		{"agent says the hypervisor is down", cluster.HealthAlive, []step{
			{0, HealthSignals{Connected: true, Agent: "alive", HypervisorDown: true}, cluster.HealthAlive},
			{5, HealthSignals{Connected: true, Agent: "alive", HypervisorDown: true}, cluster.HealthSuspect}}},
		{"fenced is sticky", cluster.HealthFenced, []step{{0, good, cluster.HealthFenced}, {100, good, cluster.HealthFenced}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := HealthTrack{Health: tt.start}
			for _, s := range tt.steps {
				tr = FuseHealth(tr, s.sig, t0.Add(time.Duration(s.at)*time.Second), p)
				if tr.Health != s.want {
					t.Fatalf("at %ds with %+v: %s, want %s", s.at, s.sig, tr.Health, s.want)
				}
			}
		})
	}
}

// TestFuseHealthReturned: a fenced host stays fenced, and is reported back
// only once its signals were good for alive_after without a break.
func TestFuseHealthReturned(t *testing.T) {
	p := HealthPolicy{SuspectAfter: 5 * time.Second, DeadAfter: 30 * time.Second, AliveAfter: 10 * time.Second}
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	good, down := HealthSignals{Connected: true}, HealthSignals{Connected: false}
	tr := HealthTrack{Health: cluster.HealthFenced}
	for _, s := range []struct {
		at       int
		sig      HealthSignals
		returned bool
	}{{0, down, false}, {1, good, false}, {10, good, false}, {10, down, false}, {12, good, false}, {21, good, false}, {22, good, true}} {
		tr = FuseHealth(tr, s.sig, t0.Add(time.Duration(s.at)*time.Second), p)
		if tr.Health != cluster.HealthFenced || tr.Returned != s.returned {
			t.Fatalf("at %ds with %+v: %s returned=%v, want fenced returned=%v", s.at, s.sig, tr.Health, tr.Returned, s.returned)
		}
	}
}
