package daemon

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
)

// Actors of the events the server writes on its own while a test runs: the
// health controller (a dev host turns alive after its first probe, or
// suspect when a starved machine answers a probe late) and inventory sync.
// Nothing a request does is written under these names.
var backgroundActors = map[string]bool{"health": true, "inventory-sync": true}

// requestChanges lists what changed between two states that a request
// could have changed: any event a request writes, the hosts' admin status,
// reason, maintenance state, operation, fencing and lease, the VMs'
// placement, operations, rollouts, silences, servers and the policy in
// force. A host's health (and DownSince) counts too, unless the health
// controller recorded a change of that host in between: the background
// moves health on its own, and says so in the log.
func requestChanges(before, after *cluster.State) []string {
	var out []string
	healthMoved := map[string]bool{}
	for _, e := range after.Events {
		if e.Seq < before.NextEventSeq {
			continue
		}
		if !backgroundActors[e.Actor] {
			out = append(out, fmt.Sprintf("event %d %s by %s: %s", e.Seq, e.Type, e.Actor, e.Message))
		}
		if e.Type == "host.health" || e.Type == "host.returned" {
			healthMoved[e.Host] = true
		}
	}
	for name, hb := range before.Hosts {
		ha, ok := after.Hosts[name]
		if !ok {
			out = append(out, "host "+name+" is gone")
			continue
		}
		diff := func(field string, b, a any) {
			if !reflect.DeepEqual(b, a) {
				out = append(out, fmt.Sprintf("host %s %s: %v -> %v", name, field, b, a))
			}
		}
		diff("admin_status", hb.Admin, ha.Admin)
		diff("admin_reason", hb.AdminReason, ha.AdminReason)
		diff("maintenance_state", hb.Maintenance, ha.Maintenance)
		diff("operation", hb.Operation, ha.Operation)
		diff("labels", hb.Labels, ha.Labels)
		diff("fenced_by", hb.FencedBy, ha.FencedBy)
		diff("lease_ttl", hb.LeaseTTL, ha.LeaseTTL)
		if !healthMoved[name] {
			diff("health (no health event in between)", hb.Health, ha.Health)
			diff("down_since (no health event in between)", hb.DownSince, ha.DownSince)
		}
	}
	for id, vb := range before.VMs {
		if va, ok := after.VMs[id]; !ok || va.Host != vb.Host {
			out = append(out, fmt.Sprintf("VM %s moved or went from %s", id, vb.Host))
		}
	}
	same := func(what string, b, a any) {
		if !reflect.DeepEqual(b, a) {
			out = append(out, fmt.Sprintf("%s: %v -> %v", what, b, a))
		}
	}
	same("operations", keys(before.Operations), keys(after.Operations))
	same("rollouts", keys(before.Rollouts), keys(after.Rollouts))
	same("silences", keys(before.Silences), keys(after.Silences))
	same("servers", keys(before.Servers), keys(after.Servers))
	same("policy in force", policyVersion(before.Policy), policyVersion(after.Policy))
	return out
}

// checkRequestsChangedNothing fails t with what changed if the requests
// sent between the two states changed anything (see requestChanges).
func checkRequestsChangedNothing(t testing.TB, before, after *cluster.State) {
	t.Helper()
	if ch := requestChanges(before, after); len(ch) > 0 {
		t.Fatalf("refused requests changed the cluster:\n%s", joinLines(ch))
	}
}

func keys[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func policyVersion(p *cluster.Policy) string {
	if p == nil {
		return "none"
	}
	return fmt.Sprintf("v%d %s", p.Version, p.Hash)
}

func joinLines(ls []string) string {
	s := ""
	for _, l := range ls {
		s += "  " + l + "\n"
	}
	return s
}

// lastOfType is the newest of evs (oldest first) of type typ: a host's log
// also holds what the health controller and inventory sync write, in any
// order with the test's own requests, so the newest event is not always
// the request's.
func lastOfType(evs []api.Event, typ string) (api.Event, bool) {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == typ {
			return evs[i], true
		}
	}
	return api.Event{}, false
}

// TestRequestChangesIgnoresOnlyBackgroundHealth: the check refused
// requests are held to sees every change a request could make, and lets a
// host's health move only when the health controller logged it.
func TestRequestChangesIgnoresOnlyBackgroundHealth(t *testing.T) {
	base := func() *cluster.State {
		st := cluster.NewState()
		st.Hosts["h1"] = &cluster.Host{Name: "h1", Admin: cluster.Available, Health: cluster.HealthUnknown}
		st.VMs["vm1"] = &cluster.VM{ID: "vm1", Host: "h1"}
		st.NextEventSeq = 5
		return st
	}
	event := func(seq uint64, typ, actor string) cluster.Event {
		return cluster.Event{Seq: seq, Type: typ, Actor: actor, Host: "h1"}
	}
	tests := []struct {
		name   string
		change func(*cluster.State)
		want   int // changes reported
	}{
		{"nothing", func(*cluster.State) {}, 0},
		{"health moved by the health controller", func(st *cluster.State) {
			st.Hosts["h1"] = &cluster.Host{Name: "h1", Admin: cluster.Available, Health: cluster.HealthAlive}
			st.Events = append(st.Events, event(5, "host.health", "health"))
		}, 0},
		{"health moved with no health event", func(st *cluster.State) {
			st.Hosts["h1"] = &cluster.Host{Name: "h1", Admin: cluster.Available, Health: cluster.HealthSuspect}
		}, 1},
		{"admin status changed while health moved", func(st *cluster.State) {
			st.Hosts["h1"] = &cluster.Host{Name: "h1", Admin: cluster.NotAccepting, Health: cluster.HealthAlive}
			st.Events = append(st.Events, event(5, "host.health", "health"))
		}, 1},
		{"an event a request wrote", func(st *cluster.State) {
			st.Events = append(st.Events, event(5, "host.status", "api:127.0.0.1"))
		}, 1},
		{"an event from before is not counted", func(st *cluster.State) {
			st.Events = append(st.Events, event(4, "host.status", "api:127.0.0.1"))
		}, 0},
		{"an operation", func(st *cluster.State) { st.Operations["op-1"] = &cluster.Operation{ID: "op-1"} }, 1},
		{"a VM moved", func(st *cluster.State) { st.VMs["vm1"] = &cluster.VM{ID: "vm1", Host: "h2"} }, 1},
		{"a policy put in force", func(st *cluster.State) { st.Policy = &cluster.Policy{Version: 1} }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after := base()
			tt.change(after)
			if got := requestChanges(base(), after); len(got) != tt.want {
				t.Fatalf("got %d changes %q, want %d", len(got), got, tt.want)
			}
		})
	}
}
