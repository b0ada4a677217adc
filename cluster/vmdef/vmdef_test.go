package vmdef

import (
	"bytes"
	"strings"
	"testing"
)

func TestDefinitionStoredCompressedAndShared(t *testing.T) {
	raw := []byte("<domain type='kvm'><name>web-1</name>" + strings.Repeat("<controller type='pci' model='pcie-root-port'/>", 100) + "</domain>")
	d := New(raw)
	if d.Len() != len(raw) || d.StoredLen() >= len(raw)/4 {
		t.Fatalf("stored %d bytes of %d, want under a quarter", d.StoredLen(), d.Len())
	}
	got, err := d.Bytes()
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("Bytes: %v, equal %v", err, bytes.Equal(got, raw))
	}
	if !d.Is(raw) || d.Is(append([]byte{}, raw[:len(raw)-1]...)) || d.Is(nil) {
		t.Error("Is does not tell its own bytes from others")
	}
	// The same bytes, however they arrive, are stored once.
	enc, err := d.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var fromEntry Definition
	if err := fromEntry.UnmarshalBinary(enc); err != nil {
		t.Fatal(err)
	}
	if fromEntry != d || New(bytes.Clone(raw)) != d {
		t.Error("equal definitions are not shared")
	}
	var zero Definition
	if !zero.IsZero() || !New(nil).IsZero() || zero.Len() != 0 || !zero.Is(nil) {
		t.Error("empty definition")
	}
	if b, err := zero.Bytes(); b != nil || err != nil {
		t.Errorf("empty Bytes: %q %v", b, err)
	}
}

func TestDefinitionRefusesCorruptContent(t *testing.T) {
	d := New([]byte(strings.Repeat("definition ", 50)))
	enc, _ := d.MarshalBinary()
	bad := bytes.Clone(enc)
	bad[len(bad)-3] ^= 0xff // inside the zstd frame
	var got Definition
	if err := got.UnmarshalBinary(bad); err != nil {
		t.Fatal(err) // the shape is fine; Bytes checks the content
	}
	if _, err := got.Bytes(); err == nil {
		t.Fatal("a corrupt definition decompressed without an error")
	}
	for _, p := range [][]byte{{2}, {defFormat, 1, 2}, append(append([]byte{defFormat}, make([]byte, 32)...), 0, 1)} {
		if err := got.UnmarshalBinary(p); err == nil {
			t.Errorf("%x accepted", p)
		}
	}
}
