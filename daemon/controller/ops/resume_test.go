package ops

import (
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/drivers"
)

// TestResumeVerdict: what a new leader makes of a step it found running,
// from the VM's copies the hypervisors report. A VM on two hosts (a live
// migration still under way, its incoming copy paused) is never taken for
// a finished move.
func TestResumeVerdict(t *testing.T) {
	live := cluster.OpItem{VM: "v", Action: cluster.ActionLiveMigrate, Target: "h1"}
	offline := cluster.OpItem{VM: "v", Action: cluster.ActionOfflineMigrate, Target: "h1"}
	shutdown := cluster.OpItem{VM: "v", Action: cluster.ActionShutdown}
	on := func(host string, p drivers.PowerState) drivers.VM { return drivers.VM{ID: "v", Host: host, Power: p} }
	tests := []struct {
		name   string
		it     cluster.OpItem
		copies []drivers.VM
		want   resumeAction
	}{
		{"gone", live, nil, resumeGone},
		{"running on the target", live, []drivers.VM{on("h1", drivers.PoweredOn)}, resumeDone},
		{"still on the source", live, []drivers.VM{on("h2", drivers.PoweredOn)}, resumeAgain},
		{"in flight: source running, incoming paused", live, []drivers.VM{on("h2", drivers.PoweredOn), on("h1", drivers.Suspended)}, resumeAgain},
		{"in flight, the target listed first", live, []drivers.VM{on("h1", drivers.Suspended), on("h2", drivers.PoweredOn)}, resumeAgain},
		{"only a paused copy on the target", live, []drivers.VM{on("h1", drivers.Suspended)}, resumeAgain},
		{"offline move done", offline, []drivers.VM{on("h1", drivers.PoweredOff)}, resumeDone},
		{"defined on both", offline, []drivers.VM{on("h1", drivers.PoweredOff), on("h2", drivers.PoweredOff)}, resumeAgain},
		{"shut down", shutdown, []drivers.VM{on("h2", drivers.PoweredOff)}, resumeDone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resumeVerdict(tt.it, tt.copies); got != tt.want {
				t.Errorf("verdict %d, want %d", got, tt.want)
			}
		})
	}
}
