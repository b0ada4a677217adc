package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/controller/ops"
	"github.com/herd-project/herd/daemon/controller/recovery"
)

// frozenHosts are the hosts of the driver groups where an evacuation or a
// recovery is under way: its VMs land on any of them, so balancing there
// would move VMs the operation just placed.
func frozenHosts(st *cluster.State) map[string]string {
	out := map[string]string{}
	for _, op := range ops.Running(st) {
		if op.Kind != cluster.OpEvacuate && op.Kind != cluster.OpRecover || op.Kind == cluster.OpRecover && !recovery.PlacesVMs(op) {
			continue
		}
		src := st.Hosts[op.Host]
		if src == nil {
			continue
		}
		why := fmt.Sprintf("%s %s of host %s under way", op.Kind, op.ID, op.Host)
		for name, h := range st.Hosts {
			if _, seen := out[name]; !seen && h.Driver == src.Driver && h.Group == src.Group {
				out[name] = why
			}
		}
	}
	return out
}

// vmBusy names the running operation a VM is a step of.
func vmBusy(st *cluster.State, id string) string {
	for _, op := range st.Operations {
		if op.State != cluster.OpRunning {
			continue
		}
		if i := op.Item(id); i >= 0 && !op.Items[i].State.Terminal() {
			return op.ID
		}
	}
	return ""
}

func newOpID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "op-" + hex.EncodeToString(b)
}
