package policy

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzPolicyParse: Parse never panics, and every document it
// accepts encodes (YAML) to text that parses to the same document.
func FuzzPolicyParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	files = append(files, "../configs/policy.yaml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("apiVersion: herd/v1\nkind: Policy\n"))
	f.Add([]byte("apiVersion: herd/v1\nkind: Policy\nbalancing:\n  mode: sometimes\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := Parse("fuzz.yaml", data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		y, err := doc.YAML()
		if err != nil {
			t.Fatalf("accepted document does not encode: %v", err)
		}
		doc2, err := Parse("canonical.yaml", y)
		if err != nil {
			t.Fatalf("canonical form refused: %v\n%s", err, y)
		}
		y2, err := doc2.YAML()
		if err != nil || !bytes.Equal(y, y2) {
			t.Fatalf("round trip changed the document (%v):\n%s\n---\n%s", err, y, y2)
		}
		if doc.Hash() != doc2.Hash() {
			t.Fatal("round trip changed the hash")
		}
	})
}
