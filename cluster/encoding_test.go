package cluster

import (
	"fmt"
	"strings"
	"testing"

	"github.com/herd-project/herd/cluster/vmdef"
)

// writeSizes records the size of every Write.
type writeSizes struct{ sizes []int }

func (w *writeSizes) Write(p []byte) (int, error) {
	w.sizes = append(w.sizes, len(p))
	return len(p), nil
}

// A snapshot reaches its sink as the state is encoded, in writes of a
// bounded buffer, never as one copy of the whole encoded state.
func TestWriteStateStreams(t *testing.T) {
	s := NewState()
	d := &InventoryDiff{Driver: "dc", UpsertHosts: []Host{{Name: "h"}}}
	for i := 0; i < 4000; i++ {
		raw := strings.Repeat(fmt.Sprintf("<disk file='/images/vm-%d-%d.qcow2'/>", i, i*7), 60)
		d.UpsertVMs = append(d.UpsertVMs, VM{ID: fmt.Sprintf("v%d", i), Host: "h", Definition: vmdef.New([]byte(raw))})
	}
	s.Apply(d, 1)
	w := &writeSizes{}
	if err := WriteState(w, s); err != nil {
		t.Fatal(err)
	}
	total, largest := 0, 0
	for _, n := range w.sizes {
		total += n
		largest = max(largest, n)
	}
	if total < 512<<10 || largest > 256<<10 {
		t.Fatalf("%d bytes in %d writes, the largest %d: want over 512 KiB, in writes of at most 256 KiB", total, len(w.sizes), largest)
	}
}
