package cluster

import (
	"bytes"
	"testing"
	"time"
)

// A silence record survives encoding, a snapshot and a restore; clearing
// it names its id, so a newer silence of the host is kept.
func TestSilenceRecords(t *testing.T) {
	s := NewState()
	now := time.Now().UTC().Truncate(time.Second)
	set := &SetSilence{Silence: Silence{Host: "h1", ID: "a", Operation: "op-1", StartsAt: now, EndsAt: now.Add(time.Hour)},
		Event: NewEvent("alertmanager.silenced", "alertmanager", "h1", "", "silenced")}
	b, err := Encode(set)
	if err != nil {
		t.Fatal(err)
	}
	if CommandType(b[0])&IgnoreUnknownFlag == 0 {
		t.Fatalf("silence commands must be skippable by older servers, type byte %#x", b[0])
	}
	cmd, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(cmd, 1); err != nil {
		t.Fatal(err)
	}
	if got := s.Silences["h1"]; got == nil || got.ID != "a" || !got.EndsAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("silence after apply: %+v", got)
	}
	if len(s.Events) != 1 {
		t.Fatalf("events: %d, want 1", len(s.Events))
	}
	var buf bytes.Buffer
	if err := WriteState(&buf, s); err != nil {
		t.Fatal(err)
	}
	r, err := ReadState(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Silences["h1"]; got == nil || got.ID != "a" || got.Operation != "op-1" {
		t.Fatalf("silence after restore: %+v", got)
	}
	snap := s.Snapshot()
	for _, c := range []Command{&ClearSilence{Host: "h1", ID: "old"}, &ClearSilence{Host: "h1", ID: "a"}} {
		b, _ := Encode(c)
		d, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Apply(d, 2); err != nil {
			t.Fatal(err)
		}
		if c.(*ClearSilence).ID == "old" && s.Silences["h1"] == nil {
			t.Fatal("clearing another id forgot the host's silence")
		}
	}
	if s.Silences["h1"] != nil {
		t.Fatal("silence still recorded after its clear")
	}
	if snap.Silences["h1"] == nil {
		t.Fatal("a snapshot taken before changed with the state")
	}
}
