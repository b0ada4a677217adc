package raftnode

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
)

// TestRestoreJSONEraDataDir opens a data dir written by the servers that
// encoded raft entries and snapshots in JSON (testdata/jsonera: a snapshot
// at index 9 and five log entries after it, written by commit 4bc09bb) and
// carries on: the state is the one those servers had, new commands apply,
// and after a snapshot in today's encoding and a restart it is still there.
// snapshotMagic starts every snapshot written in msgpack (cluster's encoding.go).
const snapshotMagic = "herd-state/msgpack/1\n"

func TestRestoreJSONEraDataDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/jsonera")); err != nil {
		t.Fatal(err)
	}
	open := func() *Node {
		cfg := NodeConfigForTest(t, "s1", dir)
		n, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		WaitLeader(t, 10*time.Second, n)
		if err := n.Barrier(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		return n
	}
	wantXML, err := os.ReadFile("testdata/jsonera/vm-a.xml")
	if err != nil {
		t.Fatal(err)
	}
	wantVSphere, err := os.ReadFile("testdata/jsonera/vm-b.json")
	if err != nil {
		t.Fatal(err)
	}
	const (
		vmA = "0c5d2d3e-8c2b-4f5e-9b61-2d1f0c6a7e01"
		vmB = "4210aaaa-0000-0000-0000-000000000002"
		vmD = "0c5d2d3e-8c2b-4f5e-9b61-2d1f0c6a7e04"
	)
	check := func(n *Node, extra int, admin cluster.AdminStatus, reason string) {
		t.Helper()
		st := n.FSM().State()
		if len(st.Hosts) != 3 || len(st.VMs) != 3 {
			t.Fatalf("%d hosts and %d VMs, want 3 and 3 (the last inventory removed one of 4)", len(st.Hosts), len(st.VMs))
		}
		if h := st.Hosts["kvm-c"]; h.Admin != admin || h.AdminReason != reason {
			t.Errorf("kvm-c: %s %q, want %s %q", h.Admin, h.AdminReason, admin, reason)
		}
		if h := st.Hosts["kvm-a"]; h.Health != cluster.HealthAlive || h.LeaseTTL != 15*time.Second || h.Labels["rack"] != "r1" {
			t.Errorf("kvm-a (from log entries after the snapshot): health %s, lease %s, labels %v", h.Health, h.LeaseTTL, h.Labels)
		}
		if st.VMs[vmD] != nil {
			t.Error("VM tiny, removed by a log entry after the snapshot, is still there")
		}
		a, b := st.VMs[vmA], st.VMs[vmB]
		if a == nil || b == nil {
			t.Fatalf("VMs web-1 and db-1 missing: %v %v", a, b)
		}
		if !bytes.Equal(definitionBytes(t, a), wantXML) || !bytes.Equal(definitionBytes(t, b), wantVSphere) {
			t.Error("definitions differ from those the JSON-era servers stored")
		}
		if b.Host != "kvm-a" || a.Power != cluster.PoweredOn || !a.Autostart {
			t.Errorf("db-1 on %s (want kvm-a), web-1 %s autostart %v", b.Host, a.Power, a.Autostart)
		}
		op := st.Operations["op-1"]
		if op == nil || op.State != cluster.OpSucceeded || op.Items[0].State != cluster.ItemDone {
			t.Errorf("operation op-1: %+v", op)
		}
		if st.Policy == nil || string(st.Policy.YAML) != "apiVersion: herd/v1\nkind: Policy\n" {
			t.Errorf("policy: %+v", st.Policy)
		}
		if st.EventRetention != 5000 || len(st.Events) != 11+extra {
			t.Errorf("event retention %d, %d events; want 5000 and %d", st.EventRetention, len(st.Events), 11+extra)
		}
		if last := st.Events[len(st.Events)-1-extra]; last.Message != "disk ordered" || last.Seq != 11 {
			t.Errorf("last JSON-era event: %+v", last)
		}
	}
	n := open()
	check(n, 0, cluster.NotAccepting, "disk replacement")
	// Carry on: a command in today's encoding, a snapshot, a restart.
	if _, err := n.Apply(context.Background(), &cluster.SetHostStatus{Host: "kvm-c", Status: cluster.Available, Event: cluster.NewEvent("host.status", "token:ops", "kvm-c", "", "kvm-c is AVAILABLE")}); err != nil {
		t.Fatal(err)
	}
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	n.Shutdown()
	n = open()
	defer n.Shutdown()
	check(n, 1, cluster.Available, "")
	snaps, _ := filepath.Glob(filepath.Join(dir, "raft", "snapshots", "*", "state.bin"))
	var newest []byte
	for _, f := range snaps {
		if b, err := os.ReadFile(f); err == nil && bytes.HasPrefix(b, []byte(snapshotMagic)) {
			newest = b
		}
	}
	if newest == nil {
		t.Fatalf("no snapshot in today's encoding among %v", snaps)
	}
}

// definitionBytes is vm's definition as the driver gave it.
func definitionBytes(t *testing.T, vm *cluster.VM) []byte {
	t.Helper()
	b, err := vm.Definition.Bytes()
	if err != nil {
		t.Fatalf("definition of %s: %v", vm.Name, err)
	}
	return b
}
