package cluster

import (
	"bytes"
	"testing"
	"time"
)

// FuzzDecodeCommand: Decode never panics on a raft log entry (msgpack, or
// JSON from the JSON era), and every command it accepts encodes to an
// entry that decodes and re-encodes to the same bytes.
func FuzzDecodeCommand(f *testing.F) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	ev := Event{Seq: 1, Time: now, Type: "host.status", Actor: "token:alice", Host: "h1", Message: "m"}
	for _, c := range []Command{
		&SetHostStatus{Host: "h1", Status: NotAccepting, Reason: "disk", Event: ev},
		&AppendEvents{Events: []Event{ev}},
		&RegisterServer{Server: Server{ID: "s1", RaftAddr: "127.0.0.1:7421", APIAddr: "https://127.0.0.1:7420"}},
		&SetEventRetention{Max: 500},
		&InventoryDiff{Driver: "vc", UpsertHosts: []Host{{Name: "h1", Driver: "vc", MemoryBytes: 1 << 30, CPUs: 4}}, RemoveVMs: []string{"v1"}},
		&SetPolicy{YAML: []byte("apiVersion: herd/v1\nkind: Policy\n"), Hash: "ab", Source: "api", Time: now},
		&CancelOperation{},
		&HostFenced{Host: "h1", Method: "power", OK: true, Event: ev},
		&HostLease{Host: "h1", TTL: 10 * time.Second, Event: ev},
		&HostReturned{Host: "h1", Event: ev},
		&ForgetVMs{IDs: []string{"v1"}, Event: ev},
		&FinishItem{Op: "op-1", VM: "v1", OK: true, NewID: "v1-new", Time: now, Event: ev},
	} {
		b, err := Encode(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// Entries of the JSON era: one type byte, then JSON.
	f.Add([]byte("\x01{\"driver\":\"vc\",\"upsert_vms\":[{\"id\":\"v1\",\"host\":\"h1\",\"definition\":\"eyJ4IjoxfQ==\"}],\"remove_hosts\":[\"h2\"]}"))
	f.Add([]byte("\x0c{\"op\":\"op-1\",\"vm\":\"v1\",\"ok\":true,\"time\":\"2026-11-22T12:00:00Z\"}"))
	f.Add([]byte{})
	f.Add([]byte{byte(CmdHostStatus) | byte(IgnoreUnknownFlag), '{', '}'})
	f.Add([]byte{200, '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			if c != nil {
				t.Fatal("an error with a command")
			}
			return
		}
		enc, err := Encode(c)
		if err != nil {
			t.Fatalf("decoded command does not encode: %v", err)
		}
		c2, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v\n%q", err, enc)
		}
		if c2.Type() != c.Type() {
			t.Fatalf("type %d became %d", c.Type(), c2.Type())
		}
		enc2, err := Encode(c2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable (%v):\n%q\n%q", err, enc, enc2)
		}
	})
}
