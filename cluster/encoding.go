package cluster

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// Raft log entries and snapshots are msgpack (hashicorp/go-msgpack, as raft
// itself uses) of the same structs, under the same names, as the JSON that
// servers wrote before: a new command type needs a struct and a case in
// newCommand, nothing more. Fields unknown to a server are skipped when it
// decodes, as with JSON. Definitions travel as the compact binary form
// their type gives them (encoding.BinaryMarshaler).
//
// A log entry is one type byte (IgnoreUnknownFlag included), then the
// command: a msgpack map, or — written by a server of the JSON era — a JSON
// object, which always starts with '{' (a msgpack map never does).
//
// A snapshot is snapshotMagic, then the state as one msgpack map, written
// and read as a stream; a JSON-era snapshot is the state as JSON.

// snapshotMagic starts every snapshot written in msgpack.
const snapshotMagic = "herd-state/msgpack/1\n"

// msgpackHandle encodes canonically (map keys sorted), so one command
// always gives the same bytes.
var msgpackHandle = func() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{WriteExt: true}
	h.Canonical = true
	h.MaxInitLen = 4096
	return h
}()

// appendMsgpack appends v in msgpack to b.
func appendMsgpack(b []byte, v any) ([]byte, error) {
	var body []byte // the encoder writes from the start of its buffer
	if err := codec.NewEncoderBytes(&body, msgpackHandle).Encode(v); err != nil {
		return nil, err
	}
	return append(b, body...), nil
}

// decodeBody reads a command's body: msgpack, or JSON from the JSON era.
func decodeBody(p []byte, v any) error {
	if len(p) > 0 && p[0] == '{' {
		return json.Unmarshal(p, v)
	}
	return codec.NewDecoderBytes(p, msgpackHandle).Decode(v)
}

// ReadState decodes a state written by WriteState, or a JSON-era snapshot.
func ReadState(r io.Reader) (*State, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	s := NewState()
	head, err := br.Peek(len(snapshotMagic))
	if err == nil && string(head) == snapshotMagic {
		br.Discard(len(snapshotMagic))
		if err := codec.NewDecoder(br, msgpackHandle).Decode(s); err != nil {
			return nil, fmt.Errorf("decode state: %w", err)
		}
	} else {
		if t := bytes.TrimLeft(head, " \t\r\n"); len(t) > 0 && t[0] != '{' {
			return nil, fmt.Errorf("decode state: unknown snapshot format (starts %q)", head)
		}
		if err := json.NewDecoder(br).Decode(s); err != nil {
			return nil, fmt.Errorf("decode JSON-era state: %w", err)
		}
	}
	if s.Hosts == nil {
		s.Hosts = map[string]*Host{}
	}
	if s.VMs == nil {
		s.VMs = map[string]*VM{}
	}
	if s.Servers == nil {
		s.Servers = map[string]*Server{}
	}
	if s.Silences == nil {
		s.Silences = map[string]*Silence{}
	}
	if s.Operations == nil {
		s.Operations = map[string]*Operation{}
	}
	if s.Rollouts == nil {
		s.Rollouts = map[string]*Rollout{}
	}
	s.moveLegacyStale()
	return s, nil
}

// WriteState encodes the whole state as a stream: w receives it as it is
// encoded, never as a second copy of it in memory.
func WriteState(w io.Writer, s *State) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	if _, err := bw.WriteString(snapshotMagic); err != nil {
		return err
	}
	if err := codec.NewEncoder(bw, msgpackHandle).Encode(s); err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	return bw.Flush()
}
