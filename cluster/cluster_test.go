package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/herd-project/herd/internal/testutil"
)

func hostDiff(driver string, names ...string) *InventoryDiff {
	d := &InventoryDiff{Driver: driver}
	for _, n := range names {
		d.UpsertHosts = append(d.UpsertHosts, Host{Name: n, MemoryBytes: 64 << 30, CPUs: 16, Connection: Connected})
	}
	return d
}

func TestLeaderLossKeepsCommittedWrites(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	nodes := StartTestCluster(t, dirs)
	defer func() {
		for _, n := range nodes {
			if n != nil {
				n.Shutdown()
			}
		}
	}()
	leader := WaitLeader(t, 5*time.Second, nodes...)

	ctx := context.Background()
	var written []string
	for i := 0; i < 50; i++ {
		name := fmt.Sprintf("host-%02d", i)
		if _, err := leader.Apply(ctx, hostDiff("dc", name)); err != nil {
			t.Fatalf("apply %s: %v", name, err)
		}
		written = append(written, name)
	}

	// Kill the leader; a new one must be elected among the survivors.
	var survivors []*Node
	killed := -1
	for i, n := range nodes {
		if n == leader {
			killed = i
			continue
		}
		survivors = append(survivors, n)
	}
	start := time.Now()
	if err := leader.Shutdown(); err != nil {
		t.Fatalf("shutdown leader: %v", err)
	}
	nodes[killed] = nil
	newLeader := WaitLeader(t, 5*time.Second, survivors...)
	t.Logf("new leader %s after %s", newLeader.ID(), time.Since(start))
	if newLeader == leader {
		t.Fatal("old leader still leads")
	}
	// Writes continue on the new leader.
	if _, err := newLeader.Apply(ctx, hostDiff("dc", "host-after")); err != nil {
		t.Fatalf("apply after failover: %v", err)
	}
	written = append(written, "host-after")
	for _, n := range survivors {
		n := n
		testutil.WaitFor(t, 5*time.Second, "survivor "+n.ID()+" has every write", func() bool {
			var ok bool
			n.FSM().Read(func(s *State) {
				ok = len(s.Hosts) == len(written)
				for _, name := range written {
					ok = ok && s.Hosts[name] != nil
				}
			})
			return ok
		})
	}

	// The killed node restarts from its data dir, recovers its state and
	// catches up with what was written while it was down.
	cfg := NodeConfigForTest(t, fmt.Sprintf("s%d", killed+1), dirs[killed])
	cfg.Bind = leader.Addr() // same address as before: it is in the configuration
	restarted, err := Open(cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	nodes[killed] = restarted
	has, err := restarted.HasState()
	if err != nil || !has {
		t.Fatalf("restarted node has no state: %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "restarted node catches up", func() bool {
		var n int
		restarted.FSM().Read(func(s *State) { n = len(s.Hosts) })
		return n == len(written)
	})
}

func TestApplyOnFollowerIsRefused(t *testing.T) {
	nodes := StartTestCluster(t, []string{t.TempDir(), t.TempDir(), t.TempDir()})
	defer func() {
		for _, n := range nodes {
			n.Shutdown()
		}
	}()
	leader := WaitLeader(t, 5*time.Second, nodes...)
	for _, n := range nodes {
		if n == leader {
			continue
		}
		if _, err := n.Apply(context.Background(), hostDiff("dc", "x")); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("apply on follower: got %v, want ErrNotLeader", err)
		}
	}
}

func TestSingleNodeRestartRecoversFromSnapshotAndLog(t *testing.T) {
	dir := t.TempDir()
	cfg := NodeConfigForTest(t, "s1", dir)
	n, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Bootstrap(map[string]string{"s1": n.Addr()}); err != nil {
		t.Fatal(err)
	}
	WaitLeader(t, 5*time.Second, n)
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if _, err := n.Apply(ctx, hostDiff("dc", fmt.Sprintf("h%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Snapshot(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// Entries after the snapshot live only in the log.
	if _, err := n.Apply(ctx, &SetHostStatus{Host: "h3", Status: NotAccepting, Reason: "disk", Event: NewEvent("host.status", "test", "h3", "", "closed")}); err != nil {
		t.Fatal(err)
	}
	before := n.FSM().State()
	n.Shutdown()

	n2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Shutdown()
	if err := n2.Bootstrap(map[string]string{"s1": n2.Addr()}); err != nil {
		t.Fatal(err)
	}
	WaitLeader(t, 5*time.Second, n2)
	if err := n2.Barrier(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	after := n2.FSM().State()
	if len(after.Hosts) != 10 || after.Hosts["h3"].Admin != NotAccepting || after.Hosts["h3"].AdminReason != "disk" {
		t.Fatalf("state after restart: %d hosts, h3=%+v", len(after.Hosts), after.Hosts["h3"])
	}
	if !reflect.DeepEqual(before.Events, after.Events) {
		t.Fatalf("events differ after restart:\n%v\n%v", before.Events, after.Events)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := NewState()
	s.applyInventory(&InventoryDiff{Driver: "dc",
		UpsertHosts: []Host{{Name: "a", MemoryBytes: 1 << 30, Labels: map[string]string{"rack": "1"}}},
		UpsertVMs:   []VM{{ID: "v1", Name: "web", Host: "a", MemoryBytes: 512 << 20, VCPUs: 2, Power: PoweredOn, Definition: NewDefinition([]byte(`{"x":1}`))}},
		Events:      []Event{NewEvent("inventory.host_added", "sync", "a", "", "added")},
	})
	s.Servers["s1"] = &Server{ID: "s1", RaftAddr: "127.0.0.1:1", APIAddr: "http://127.0.0.1:2"}
	s.Index = 42
	var buf bytes.Buffer
	if err := WriteState(&buf, s); err != nil {
		t.Fatal(err)
	}
	got, err := ReadState(&buf)
	if err != nil {
		t.Fatal(err)
	}
	// Time loses its monotonic reading in JSON; compare the rest exactly.
	for i := range s.Events {
		s.Events[i].Time = s.Events[i].Time.Round(0)
	}
	if !reflect.DeepEqual(s, got) {
		t.Fatalf("round trip differs:\n%+v\n%+v", s, got)
	}
}

func TestApplyRefusalsChangeNothing(t *testing.T) {
	s := NewState()
	s.applyInventory(hostDiff("dc", "a"))
	before := s.Snapshot()
	tests := []struct {
		name string
		cmd  Command
		code int
	}{
		{"unknown host", &SetHostStatus{Host: "nope", Status: Offline}, 404},
		{"bad status", &SetHostStatus{Host: "a", Status: "BROKEN"}, 400},
		{"health of unknown host", &SetHostHealth{Host: "nope", Health: HealthDead}, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := s.apply(tt.cmd, 1)
			var ae *ApplyError
			if err, ok := res.(error); !ok || !errors.As(err, &ae) || ae.Code != tt.code {
				t.Fatalf("got %v, want ApplyError %d", res, tt.code)
			}
			if !reflect.DeepEqual(before.Hosts, s.Hosts) || len(s.Events) != len(before.Events) {
				t.Fatal("state changed by a refused command")
			}
		})
	}
}

func TestInventoryKeepsHerdFields(t *testing.T) {
	s := NewState()
	s.applyInventory(hostDiff("dc", "a"))
	s.apply(&SetHostStatus{Host: "a", Status: InMaintenance, Reason: "bios"}, 2)
	s.applyInventory(&InventoryDiff{Driver: "dc", UpsertHosts: []Host{{Name: "a", MemoryBytes: 128 << 30}}})
	h := s.Hosts["a"]
	if h.Admin != InMaintenance || h.AdminReason != "bios" || h.MemoryBytes != 128<<30 || h.Driver != "dc" {
		t.Fatalf("host after sync: %+v", h)
	}
}

func TestEventsRetentionAndOrder(t *testing.T) {
	s := NewState()
	s.apply(&SetEventRetention{Max: 100}, 1)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 1000; i++ {
		e := Event{Type: "x", Host: fmt.Sprintf("h%d", i%3), Time: t0.Add(time.Duration(i) * time.Second), Message: "m"}
		if i == 500 {
			e.Time = t0 // a leader with a slow clock
		}
		s.appendEvents(e)
	}
	if len(s.Events) > 100+100/8 || len(s.Events) < 100 {
		t.Fatalf("retention: %d events", len(s.Events))
	}
	for i := 1; i < len(s.Events); i++ {
		if s.Events[i].Time.Before(s.Events[i-1].Time) || s.Events[i].Seq != s.Events[i-1].Seq+1 {
			t.Fatalf("events out of order at %d", i)
		}
	}
	got := s.QueryEvents(EventFilter{Host: "h1", Since: t0.Add(990 * time.Second)})
	for _, e := range got {
		if e.Host != "h1" || e.Time.Before(t0.Add(990*time.Second)) {
			t.Fatalf("query returned %+v", e)
		}
	}
	if len(got) != 3 { // 990..999 with i%3==1: 991, 994, 997
		t.Fatalf("query: %d events, want 3", len(got))
	}
}

func TestDecodeUnknownCommand(t *testing.T) {
	if _, err := Decode([]byte{99, '{', '}'}); !errors.Is(err, ErrUnknownCommand) {
		t.Fatalf("got %v", err)
	}
	f := NewFSM(nil)
	// An unknown command flagged as ignorable is skipped.
	if res := f.Apply(&raft.Log{Type: raft.LogCommand, Index: 1, Data: []byte{byte(99 | IgnoreUnknownFlag), '{', '}'}}); res != nil {
		t.Fatalf("ignorable unknown command: %v", res)
	}
}
