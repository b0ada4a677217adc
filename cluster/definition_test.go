package cluster

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestDefinitionStoredCompressedAndShared(t *testing.T) {
	raw := []byte("<domain type='kvm'><name>web-1</name>" + strings.Repeat("<controller type='pci' model='pcie-root-port'/>", 100) + "</domain>")
	d := NewDefinition(raw)
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
	if fromEntry != d || NewDefinition(bytes.Clone(raw)) != d {
		t.Error("equal definitions are not shared")
	}
	var zero Definition
	if !zero.IsZero() || !NewDefinition(nil).IsZero() || zero.Len() != 0 || !zero.Is(nil) {
		t.Error("empty definition")
	}
	if b, err := zero.Bytes(); b != nil || err != nil {
		t.Errorf("empty Bytes: %q %v", b, err)
	}
}

func TestDefinitionRefusesCorruptContent(t *testing.T) {
	d := NewDefinition([]byte(strings.Repeat("definition ", 50)))
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

// The JSON era stored a definition as base64 of its bytes; a VM read from
// it holds the same definition as one written today.
func TestDefinitionFromJSONEra(t *testing.T) {
	var vm VM
	if err := json.Unmarshal([]byte(`{"id":"v1","definition":"eyJ4IjoxfQ=="}`), &vm); err != nil {
		t.Fatal(err)
	}
	if vm.Definition != NewDefinition([]byte(`{"x":1}`)) {
		t.Fatalf("definition %v", vm.Definition)
	}
	out, err := json.Marshal(vm)
	if err != nil || !strings.Contains(string(out), `"definition":"eyJ4IjoxfQ=="`) {
		t.Fatalf("JSON %s %v", out, err)
	}
	var none VM
	if err := json.Unmarshal([]byte(`{"id":"v2","definition":null}`), &none); err != nil || !none.Definition.IsZero() {
		t.Fatalf("null definition: %v %v", none.Definition, err)
	}
	if out, _ := json.Marshal(none); strings.Contains(string(out), "definition") {
		t.Errorf("empty definition written: %s", out)
	}
}
