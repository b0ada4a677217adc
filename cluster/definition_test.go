package cluster

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/herd-project/herd/cluster/vmdef"
)

// The JSON era stored a definition as base64 of its bytes; a VM read from
// it holds the same definition as one written today.
func TestDefinitionFromJSONEra(t *testing.T) {
	var vm VM
	if err := json.Unmarshal([]byte(`{"id":"v1","definition":"eyJ4IjoxfQ=="}`), &vm); err != nil {
		t.Fatal(err)
	}
	if vm.Definition != vmdef.New([]byte(`{"x":1}`)) {
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
