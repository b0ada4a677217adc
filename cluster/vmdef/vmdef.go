// Package vmdef is a VM's definition as the replicated state stores it:
// opaque to Herd, zstd-compressed and content-addressed, so that identical
// definitions share one copy.
package vmdef

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"unique"

	"github.com/klauspost/compress/zstd"
)

// Definition is what a driver needs to recreate a VM elsewhere (a libvirt
// domain XML, a vSphere configuration), opaque to Herd. The state keeps it
// zstd-compressed and content-addressed: VMs whose definitions are the same
// share one copy, and a definition is decompressed only when its VM is
// recreated. Raft entries and snapshots carry it compressed.
//
// A Definition is an immutable value; the zero Definition is empty.
type Definition struct {
	h unique.Handle[defBlob]
}

// defBlob is one stored definition: the SHA-256 of its bytes, their
// length, and their zstd frame.
type defBlob struct {
	sum [sha256.Size]byte
	n   int
	z   string
}

var (
	defEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
	defDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(MaxBytes))
)

// MaxBytes bounds a definition: a larger one is refused when
// decoded (drivers store none that large).
const MaxBytes = 16 << 20

// New compresses raw (which may be reused afterwards). Empty raw
// gives the empty Definition.
func New(raw []byte) Definition {
	if len(raw) == 0 {
		return Definition{}
	}
	return Definition{unique.Make(defBlob{sum: sha256.Sum256(raw), n: len(raw), z: string(defEncoder.EncodeAll(raw, nil))})}
}

// IsZero reports whether d is empty.
func (d Definition) IsZero() bool { return d == Definition{} }

// Len is the length of the definition's bytes (0 when empty).
func (d Definition) Len() int {
	if d.IsZero() {
		return 0
	}
	return d.h.Value().n
}

// StoredLen is how many bytes the compressed definition takes.
func (d Definition) StoredLen() int {
	if d.IsZero() {
		return 0
	}
	return len(d.h.Value().z)
}

// Is reports whether d holds exactly raw, without decompressing.
func (d Definition) Is(raw []byte) bool {
	if d.IsZero() {
		return len(raw) == 0
	}
	b := d.h.Value()
	return b.n == len(raw) && b.sum == sha256.Sum256(raw)
}

// Bytes decompresses the definition (nil when empty). The caller owns the
// result.
func (d Definition) Bytes() ([]byte, error) {
	if d.IsZero() {
		return nil, nil
	}
	b := d.h.Value()
	raw, err := defDecoder.DecodeAll([]byte(b.z), make([]byte, 0, b.n))
	if err != nil {
		return nil, fmt.Errorf("decompress definition: %w", err)
	}
	if len(raw) != b.n || sha256.Sum256(raw) != b.sum {
		return nil, errors.New("decompress definition: content does not match its checksum")
	}
	return raw, nil
}

// defFormat is the first byte of a definition's binary form.
const defFormat = 1

// MarshalBinary is the form raft entries and snapshots carry: a format
// byte, the SHA-256 and length of the definition, then its zstd frame.
func (d Definition) MarshalBinary() ([]byte, error) {
	if d.IsZero() {
		return []byte{}, nil
	}
	b := d.h.Value()
	out := make([]byte, 0, 1+sha256.Size+binary.MaxVarintLen64+len(b.z))
	out = append(out, defFormat)
	out = append(out, b.sum[:]...)
	out = binary.AppendUvarint(out, uint64(b.n))
	return append(out, b.z...), nil
}

// UnmarshalBinary reads MarshalBinary's form. It checks the frame's shape,
// not its content: Bytes checks that, when the definition is needed.
func (d *Definition) UnmarshalBinary(p []byte) error {
	if len(p) == 0 {
		*d = Definition{}
		return nil
	}
	if p[0] != defFormat || len(p) < 1+sha256.Size+1 {
		return fmt.Errorf("definition: unknown format %d or %d bytes too short", p[0], len(p))
	}
	var b defBlob
	copy(b.sum[:], p[1:1+sha256.Size])
	n, k := binary.Uvarint(p[1+sha256.Size:])
	if k <= 0 || n == 0 || n > MaxBytes {
		return errors.New("definition: bad length")
	}
	b.n = int(n)
	b.z = string(p[1+sha256.Size+k:])
	if len(b.z) == 0 {
		return errors.New("definition: no content")
	}
	d.h = unique.Make(b)
	return nil
}

// MarshalJSON writes the definition's bytes in base64, as the JSON-era
// state and log held them.
func (d Definition) MarshalJSON() ([]byte, error) {
	raw, err := d.Bytes()
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return []byte("null"), nil
	}
	return json.Marshal(raw)
}

// UnmarshalJSON reads a definition from the JSON-era state and log
// (base64 of its bytes).
func (d *Definition) UnmarshalJSON(p []byte) error {
	if bytes.Equal(p, []byte("null")) {
		*d = Definition{}
		return nil
	}
	var s string
	if err := json.Unmarshal(p, &s); err != nil {
		return fmt.Errorf("definition: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("definition: %w", err)
	}
	*d = New(raw)
	return nil
}
