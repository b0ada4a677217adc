package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/herd-project/herd/cluster/vmdef"
)

func hostDiff(driver string, names ...string) *InventoryDiff {
	d := &InventoryDiff{Driver: driver}
	for _, n := range names {
		d.UpsertHosts = append(d.UpsertHosts, Host{Name: n, MemoryBytes: 64 << 30, CPUs: 16, Connection: Connected})
	}
	return d
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := NewState()
	s.applyInventory(&InventoryDiff{Driver: "dc",
		UpsertHosts: []Host{{Name: "a", MemoryBytes: 1 << 30, Labels: map[string]string{"rack": "1"}}},
		UpsertVMs:   []VM{{ID: "v1", Name: "web", Host: "a", MemoryBytes: 512 << 20, VCPUs: 2, Power: PoweredOn, Definition: vmdef.New([]byte(`{"x":1}`))}},
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
