package daemon

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

// TestVMsThatWaitForTheirHost: a VM that no other host may take (a must
// vm-host-affinity to its host's group) and a VM the policy excludes from
// recovery wait, on their fenced host, in the recovery; the listings show
// their effective priority and groups, and refuse to move them. When the
// host returns and its stale copies are gone, both run there again, as
// before the crash; their steps end done, and so does the recovery.
func TestVMsThatWaitForTheirHost(t *testing.T) {
	dev, c := startDevWith(t, 3, 15, nil, fastRecovery)
	ctx := context.Background()
	victim := busiestHost(t, c)
	vms, err := c.VMs(ctx, victim.Name)
	if err != nil {
		t.Fatal(err)
	}
	var on []api.VMView
	for _, v := range vms {
		if v.Power == api.PoweredOn {
			on = append(on, v)
		}
	}
	if len(on) < 3 {
		t.Fatalf("busiest host %s runs %d VMs, want 3", victim.Name, len(on))
	}
	pinned, kept, other := on[0], on[1], on[2]
	doc := *dev.Policy()
	doc.HostGroups = []policy.HostGroup{{Name: "home", Hosts: []string{victim.Name}}}
	doc.VMGroups = []policy.VMGroup{{Name: "pinned", VMs: []string{pinned.Name}, Priority: 70}, {Name: "kept", VMs: []string{kept.Name}}}
	doc.Rules = []policy.Rule{{Name: "stay-home", Type: policy.RuleVMHostAffinity, VMGroup: "pinned", HostGroup: "home", Enforcement: "must"}}
	doc.Recovery.ExcludeVMGroups = []string{"kept"}
	y, err := doc.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApplyPolicy(ctx, y, "test"); err != nil {
		t.Fatal(err)
	}
	// vm ls shows the priority recovery uses, and the groups.
	testutil.WaitFor(t, 5*time.Second, "effective priority and groups listed", func() bool {
		all, _ := c.VMs(ctx, "")
		for _, v := range all {
			if v.ID == pinned.ID {
				return v.Priority == 70 && slices.Equal(v.Groups, []string{"pinned"})
			}
		}
		return false
	})

	if err := c.DevHost(ctx, victim.Name, true); err != nil {
		t.Fatal(err)
	}
	var op *api.Operation
	testutil.WaitFor(t, 30*time.Second, "the others recovered, two VMs waiting", func() bool {
		op = recoveryOf(t, c, victim.Name)
		if op == nil {
			return false
		}
		for _, it := range op.Items {
			switch it.VM {
			case pinned.ID:
				if it.State != api.ItemPending || it.Attempts == 0 {
					return false
				}
			case kept.ID:
				if it.State != api.ItemPending || it.Action != api.ActionAwaitHost {
					return false
				}
			default:
				if it.State != api.ItemDone {
					return false
				}
			}
		}
		return true
	})
	if op.State != api.OpRunning {
		t.Fatalf("recovery is %s while two VMs wait", op.State)
	}
	if !hasEvent(queryEvents(t, c, api.EventQuery{VM: kept.ID}), "vm.awaiting_host", "waits for its host") {
		t.Errorf("no event says %s waits for its host", kept.Name)
	}
	// Nothing moves a VM off a fenced host but recovery.
	_, err = c.MigrateVM(ctx, pinned.ID, api.MigrateRequest{})
	var se *api.StatusError
	if !errors.As(err, &se) || se.Code != 409 || !strings.Contains(err.Error(), "fenced") {
		t.Errorf("migrate of %s on the fenced host: %v, want 409", pinned.Name, err)
	}

	if err := c.DevHost(ctx, victim.Name, false); err != nil {
		t.Fatal(err)
	}
	op = waitOp(t, c, op.ID, 30*time.Second)
	if op.State != api.OpSucceeded {
		t.Fatalf("recovery %s: %s", op.State, op.Error)
	}
	for _, it := range op.Items {
		if (it.VM == pinned.ID || it.VM == kept.ID) && it.Target != victim.Name {
			t.Errorf("step of %s ended on %q, want its host %s", it.Name, it.Target, victim.Name)
		}
	}
	where := map[string]drivers.VM{}
	for _, v := range driverVMs(t, dev.Sim) {
		where[v.ID] = v
	}
	for _, v := range []api.VMView{pinned, kept} {
		if got := where[v.ID]; got.Host != victim.Name || got.Power != drivers.PoweredOn {
			t.Errorf("VM %s is %s on %s, want running on its host %s", v.Name, got.Power, got.Host, victim.Name)
		}
	}
	if got := where[other.ID]; got.Host == victim.Name || got.Power != drivers.PoweredOn {
		t.Errorf("VM %s is %s on %s, want running elsewhere", other.Name, got.Power, got.Host)
	}
	// It waited until the other VMs' stale copies were gone.
	var cleaned, back time.Time
	for _, e := range hostEvents(t, c, victim.Name) {
		switch {
		case e.Type == "host.stale_destroyed":
			cleaned = e.Time
		case e.Type == "step.done" && e.VM == pinned.ID:
			back = e.Time
			if !strings.Contains(e.Message, "back on its host "+victim.Name) {
				t.Errorf("step.done of %s says %q", pinned.Name, e.Message)
			}
		}
	}
	if cleaned.IsZero() || back.IsZero() || back.Before(cleaned) {
		t.Errorf("stale copies destroyed at %v, %s back at %v: want it back after", cleaned, pinned.Name, back)
	}
	if !hasEvent(queryEvents(t, c, api.EventQuery{VM: kept.ID}), "step.started", "excluded from recovery") {
		t.Errorf("no event says %s runs again on its host because it is excluded", kept.Name)
	}
}

// TestRecoveryThatOnlyWaitsDoesNotFreezeBalancing: a recovery whose open
// steps only wait for their host (excluded VMs) places nothing elsewhere,
// so it does not hold balancing in its group for as long as the host is
// away; one with a VM still to place does.
func TestRecoveryThatOnlyWaitsDoesNotFreezeBalancing(t *testing.T) {
	st := cluster.NewState()
	for _, h := range []string{"a", "b"} {
		st.Hosts[h] = &cluster.Host{Name: h, Driver: "dc", Group: "g"}
	}
	op := &cluster.Operation{ID: "r1", Kind: cluster.OpRecover, Host: "a", State: cluster.OpRunning, Items: []cluster.OpItem{
		{VM: "v1", Action: cluster.ActionRecreate, State: cluster.ItemDone},
		{VM: "v2", Action: cluster.ActionAwaitHost, State: cluster.ItemPending},
	}}
	st.Operations[op.ID] = op
	if f := frozenHosts(st); len(f) != 0 {
		t.Errorf("a recovery that only waits freezes %v", f)
	}
	op.Items[0].State = cluster.ItemPending
	if f := frozenHosts(st); len(f) != 2 {
		t.Errorf("a recovery with a VM to place freezes %v, want both hosts", f)
	}
}
