package alertmanager

import (
	"os"
	"regexp"
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
)

// Herd's own alerts are kept out of every silence by their name: each
// shipped rule must carry a name the negative matcher excludes, or a
// maintenance error would be silenced with the host.
func TestOwnAlertsAreNeverSilenced(t *testing.T) {
	b, err := os.ReadFile("../../configs/prometheus/herd-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`(?m)^\s*- alert:\s*(\S+)`).FindAllStringSubmatch(string(b), -1)
	if len(names) == 0 {
		t.Fatal("no alert rules found")
	}
	own := regexp.MustCompile("^(?:" + policy.OwnAlerts.Value + ")$")
	for _, n := range names {
		if !own.MatchString(n[1]) {
			t.Errorf("alert %s would be silenced with its host: Herd's rules are named Herd…", n[1])
		}
	}
	for _, want := range []string{"HerdMaintenanceError", "HerdEvacuationStalled"} {
		if !own.MatchString(want) {
			t.Errorf("%s is not kept out of silences", want)
		}
	}
}

func TestWantedFollowsMaintenanceState(t *testing.T) {
	st := cluster.NewState()
	st.Operations["op-1"] = &cluster.Operation{ID: "op-1", Kind: cluster.OpEvacuate, Actor: "token:ops"}
	for name, h := range map[string]cluster.Host{
		"off":      {Maintenance: cluster.MaintenanceOff, Admin: cluster.Available},
		"entering": {Maintenance: cluster.MaintenanceEntering, Operation: "op-1", Admin: cluster.Available},
		"error":    {Maintenance: cluster.MaintenanceError, Operation: "op-1"},
		"exiting":  {Maintenance: cluster.MaintenanceExiting, Operation: "op-2"},
		"admin":    {Maintenance: cluster.MaintenanceOff, Admin: cluster.InMaintenance, AdminReason: "rack move"},
		"na":       {Maintenance: cluster.MaintenanceOff, Admin: cluster.NotAccepting},
	} {
		h.Name = name
		st.Hosts[name] = &h
	}
	got := Wanted(st)
	for _, name := range []string{"entering", "error", "exiting", "admin"} {
		if _, ok := got[name]; !ok {
			t.Errorf("host %s should be silenced", name)
		}
	}
	for _, name := range []string{"off", "na"} {
		if _, ok := got[name]; ok {
			t.Errorf("host %s should not be silenced", name)
		}
	}
	if w := got["entering"]; w.Op != "op-1" || !regexp.MustCompile(`op-1 \(evacuate\) by token:ops`).MatchString(w.Why) {
		t.Errorf("comment should name the operation and its actor: %+v", w)
	}
	if w := got["admin"]; w.Op != "" || !regexp.MustCompile(`rack move`).MatchString(w.Why) {
		t.Errorf("admin status MAINTENANCE: %+v", w)
	}
}
