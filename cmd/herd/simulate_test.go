package main

import (
	"bytes"
	"testing"

	"github.com/herd-project/herd/daemon/api"
)

// The simulation prints the steps that start in their order, then the
// blocked ones with why, then the totals and the failover capacity.
func TestPrintSimulation(t *testing.T) {
	s := &api.FailureSimulation{
		Hosts: []api.SimulatedHost{{Name: "H1", Health: "alive", VMs: 3, Simulated: true}, {Name: "H2", Health: "fenced", VMs: 0, Note: "already fenced and being recovered by operation op-7 (herd op show op-7): not simulated again"}},
		Steps: []api.RecoveryStep{
			{VM: "1", Name: "db", From: "H1", Action: "await-host", Blocked: "excluded", Why: "excluded from recovery (recovery.exclude_vm_groups): it waits for its host"},
			{Order: 2, VM: "2", Name: "web", From: "H1", Action: "register", MemoryBytes: 2 << 30, Target: "H4"},
			{Order: 1, VM: "3", Name: "vip", From: "H1", Action: "recreate", Priority: 100, MemoryBytes: 8 << 30, Target: "H3"},
		},
		Recreated: 1, Registered: 1, Blocked: 1, FailoverBefore: 2, FailoverAfter: 1, FailoverMin: 1,
		Notes: []string{"recovery.automatic is off"},
	}
	var b bytes.Buffer
	if err := printSimulation(&b, s); err != nil {
		t.Fatal(err)
	}
	want := `If H1, H2 failed now (nothing changes; planned from the live state):
  H2 (fenced, 0 VMs): already fenced and being recovered by operation op-7 (herd op show op-7): not simulated again
ORDER  VM   FROM  ACTION      PRIORITY  MEM MiB  TARGET
1      vip  H1    recreate    100       8192     H3
2      web  H1    register    0         2048     H4
-      db   H1    await-host  0         0        blocked: excluded
  db: excluded from recovery (recovery.exclude_vm_groups): it waits for its host
Recreated and started: 1, registered (shut off, not started): 1, blocked: 1
Failover capacity: 2 hosts now, 1 after (failover.min_host_failures 1)
Note: recovery.automatic is off
`
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s\ndiff at %d", got, want, firstDiff(got, want))
	}
}

func firstDiff(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
