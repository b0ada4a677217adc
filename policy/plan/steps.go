package plan

import (
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/placement"
)

// EvacuationItems turns a precheck into operation steps, in evacuation order.
func EvacuationItems(st *cluster.State, host string, pc placement.Precheck) []cluster.OpItem {
	var vms []*cluster.VM
	action := map[string]string{}
	for _, list := range [][]placement.Item{pc.LiveMigrate, pc.OfflineMigrate, pc.Shutdown} {
		for _, it := range list {
			if vm := st.VMs[it.VM]; vm != nil {
				vms = append(vms, vm)
				action[vm.ID] = it.Action
			}
		}
	}
	placement.Order(vms)
	items := make([]cluster.OpItem, 0, len(vms))
	for _, vm := range vms {
		items = append(items, cluster.OpItem{VM: vm.ID, Name: vm.Name, Action: action[vm.ID], From: host, MemoryBytes: vm.MemoryBytes, Priority: vm.Priority})
	}
	return items
}

// DueRecoveries are the pending recreations of a recovery to try now, in
// its items' order (priority, highest first), leaving out those running.
// A VM whose backoff is over takes the ones before it along, backoff or
// not: when room appears, higher priorities get it first.
func DueRecoveries(items []cluster.OpItem, running func(cluster.OpItem) bool, now time.Time, r policy.RecoveryPolicy) []cluster.OpItem {
	last := -1
	for i, it := range items {
		if it.State == cluster.ItemPending && !running(it) &&
			(it.Attempts == 0 || !now.Before(it.Finished.Add(r.Backoff(it.Attempts)))) {
			last = i
		}
	}
	var out []cluster.OpItem
	for _, it := range items[:last+1] {
		if it.State == cluster.ItemPending && !running(it) {
			out = append(out, it)
		}
	}
	return out
}
