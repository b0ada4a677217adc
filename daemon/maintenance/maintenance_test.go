package maintenance

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/controller/controllertest"
	"github.com/herd-project/herd/daemon/httpapi"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/placement"
	"github.com/herd-project/herd/policy/policytest"
)

// fakeRaft is a one-server fake raft and an empty ledger: the service's
// State, Raft and Ledger without a raft node.
type fakeRaft struct{ *controllertest.Raft }

func (f fakeRaft) Planning(*cluster.State) (*placement.Ledger, placement.Options) {
	return placement.NewLedger(), placement.Options{}
}

func newService(t *testing.T, st *cluster.State, edit func(*policy.Document)) (*Service, fakeRaft) {
	t.Helper()
	doc, err := policy.Parse("test", []byte("apiVersion: herd/v1\nkind: Policy\n"))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(doc)
	}
	f := fakeRaft{controllertest.NewRaft(st)}
	n := 0
	return New(Deps{State: f, Raft: f, Ledger: f, Policy: func() *policy.Document { return doc },
		Options: func(*policy.Document, *cluster.State, int) placement.Options { return placement.Options{} },
		NewOpID: func() string { n++; return "op-" + strings.Repeat("x", n) }}), f
}

// threeHosts has h01 with two running VMs and room for them on h02, h03.
func threeHosts() *cluster.State {
	st := policytest.NewCluster(3, 64)
	policytest.AddVM(st, "a", "h01", 4, cluster.PoweredOn)
	policytest.AddVM(st, "b", "h01", 4, cluster.PoweredOff)
	return st
}

// TestRefusalsNameTheFieldAndChangeNothing: each bad request to enter or
// leave maintenance is an *httpapi.Error with its status and field, and
// writes nothing.
func TestRefusalsNameTheFieldAndChangeNothing(t *testing.T) {
	offline := threeHosts()
	policytest.SetHost(offline, "h01", func(h *cluster.Host) { h.Admin = cluster.Offline })
	tests := []struct {
		name  string
		st    *cluster.State
		exit  bool
		host  string
		req   api.MaintenanceRequest
		code  int
		field string
	}{
		{"unknown host", threeHosts(), false, "nope", api.MaintenanceRequest{Status: "enable"}, http.StatusNotFound, "host"},
		{"bad migrate", threeHosts(), false, "h01", api.MaintenanceRequest{Status: "enable", Migrate: "some"}, http.StatusBadRequest, "migrate"},
		{"disable field on enable", threeHosts(), false, "h01", api.MaintenanceRequest{Status: "enable", PowerOnVMs: []string{"b"}}, http.StatusBadRequest, "poweron_vms"},
		{"unknown target", threeHosts(), false, "h01", api.MaintenanceRequest{Status: "enable", Migrate: "all", TargetHost: "h09"}, http.StatusNotFound, "target_host"},
		{"target without migrate", threeHosts(), false, "h01", api.MaintenanceRequest{Status: "enable", TargetHost: "h02"}, http.StatusBadRequest, "target_host"},
		{"offline host", offline, false, "h01", api.MaintenanceRequest{Status: "enable"}, http.StatusConflict, "status"},
		{"exit out of maintenance", threeHosts(), true, "h01", api.MaintenanceRequest{Status: "disable"}, http.StatusConflict, "status"},
		{"enable field on disable", threeHosts(), true, "h01", api.MaintenanceRequest{Status: "disable", Migrate: "all"}, http.StatusBadRequest, "migrate"},
		{"exit unknown host", threeHosts(), true, "nope", api.MaintenanceRequest{Status: "disable"}, http.StatusNotFound, "host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, f := newService(t, tt.st, nil)
			var err error
			if tt.exit {
				_, err = m.Exit(context.Background(), tt.host, tt.req, "test", "")
			} else {
				_, err = m.Enter(context.Background(), tt.host, tt.req, "test", "", "")
			}
			var he *httpapi.Error
			if !errors.As(err, &he) || he.Code != tt.code || he.Field != tt.field {
				t.Fatalf("err = %#v, want code %d field %q", err, tt.code, tt.field)
			}
			if f.Applied() != 0 {
				t.Fatalf("a refused request wrote %d commands", f.Applied())
			}
		})
	}
}

// TestEnterIsIdempotentAndExitBringsBack: entering writes one evacuation
// under the id given; the same request again answers that operation and
// writes nothing, another one is refused; once done, exiting with the
// rollout's move back brings the VMs that left back in the power state
// they had.
func TestEnterIsIdempotentAndExitBringsBack(t *testing.T) {
	ctx := context.Background()
	m, f := newService(t, threeHosts(), nil)
	req := api.MaintenanceRequest{Status: "enable", Migrate: "all"}
	id, err := m.Enter(ctx, "h01", req, "test", "op-enter", "")
	if err != nil || id != "op-enter" || f.Applied() != 1 {
		t.Fatalf("Enter = %q, %v with %d commands; want op-enter, one command", id, err, f.Applied())
	}
	if got := f.St.Hosts["h01"].Maintenance; got != cluster.MaintenanceEntering {
		t.Fatalf("maintenance = %s, want entering", got)
	}
	if again, err := m.Enter(ctx, "h01", req, "test", "", ""); err != nil || again != id || f.Applied() != 1 {
		t.Fatalf("repeated Enter = %q, %v with %d commands; want %s and nothing written", again, err, f.Applied(), id)
	}
	var he *httpapi.Error
	if _, err := m.Enter(ctx, "h01", api.MaintenanceRequest{Status: "enable", Migrate: "none"}, "test", "", ""); !errors.As(err, &he) || he.Code != http.StatusConflict {
		t.Fatalf("Enter with other settings = %v, want a 409", err)
	}

	// The evacuation ends: the running VM went to h02, the stopped one to h03.
	op := f.St.Operations[id]
	targets := map[string]string{"a": "h02", "b": "h03"}
	for _, it := range op.Items {
		if _, err := f.Apply(ctx, &cluster.StartItem{Op: id, VM: it.VM, Target: targets[it.VM]}); err != nil {
			t.Fatal(err)
		}
		policytest.SetVM(f.St, it.VM, func(vm *cluster.VM) { vm.Host = targets[it.VM] })
		if _, err := f.Apply(ctx, &cluster.FinishItem{Op: id, VM: it.VM, OK: true}); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.St.Hosts["h01"].Maintenance; got != cluster.MaintenanceOn {
		t.Fatalf("maintenance = %s after the evacuation, want on", got)
	}
	left, err := m.ExitPrecheck("h01")
	if err != nil || left.Operation != id || len(left.LiveMigratedVMs) != 1 || len(left.OfflineMigratedVMs) != 1 {
		t.Fatalf("ExitPrecheck = %+v, %v; want one VM live- and one offline-migrated by %s", left, err, id)
	}
	if err := m.Rollout().Exit(ctx, "h01", true, "op-exit"); err != nil {
		t.Fatal(err)
	}
	exit := f.St.Operations["op-exit"]
	if exit == nil || exit.Parent != id || len(exit.Items) != 2 {
		t.Fatalf("exit operation = %+v, want two moves back with parent %s", exit, id)
	}
	for _, it := range exit.Items {
		want := map[string]string{"a": cluster.ActionLiveMigrate, "b": cluster.ActionOfflineMigrate}[it.VM]
		if it.Action != want || it.From != targets[it.VM] {
			t.Errorf("exit item %s = %s from %s, want %s from %s", it.VM, it.Action, it.From, want, targets[it.VM])
		}
	}
}

// TestRolloutCanEnter: a VM no host can take blocks a rollout's host (an
// error naming it); a failover shortfall only holds it until forced.
func TestRolloutCanEnter(t *testing.T) {
	st := policytest.NewCluster(2, 64)
	policytest.AddVM(st, "big", "h01", 60, cluster.PoweredOn)
	policytest.AddVM(st, "full", "h02", 30, cluster.PoweredOn)
	m, f := newService(t, st, nil)
	if _, err := m.Rollout().CanEnter(f.State(), "h01", "all", false); err == nil || !strings.Contains(err.Error(), "big") {
		t.Fatalf("CanEnter = %v, want an error naming VM big", err)
	}

	m, f = newService(t, threeHosts(), func(p *policy.Document) { p.Failover.MinHostFailures = 2 })
	b, err := m.Rollout().CanEnter(f.State(), "h01", "all", false)
	if err != nil || !strings.Contains(b, "failover.min_host_failures") {
		t.Fatalf("CanEnter = %q, %v; want the failover blocker", b, err)
	}
	if b, err := m.Rollout().CanEnter(f.State(), "h01", "all", true); err != nil || b != "" {
		t.Fatalf("forced CanEnter = %q, %v; want nothing in the way", b, err)
	}
	if f.Applied() != 0 {
		t.Fatalf("CanEnter wrote %d commands", f.Applied())
	}
}
