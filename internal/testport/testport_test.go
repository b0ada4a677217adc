package testport

import (
	"net"
	"strconv"
	"testing"
)

// TestPortsAreOutsideTheEphemeralRangeAndNeverRepeat: every port handed
// out lies below the ephemeral range, binds, and is handed out once.
func TestPortsAreOutsideTheEphemeralRangeAndNeverRepeat(t *testing.T) {
	end := ephemeralStart()
	seen := map[int]bool{}
	for range 200 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if p < lowest || p >= end {
			t.Fatalf("port %d outside [%d, %d)", p, lowest, end)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	first, err := Range(5)
	if err != nil {
		t.Fatal(err)
	}
	for p := first; p < first+5; p++ {
		if seen[p] {
			t.Fatalf("range port %d handed out before", p)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("range port %d: %v", p, err)
		}
		l.Close()
	}
	// A port in use is never handed out.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if free(l.Addr().(*net.TCPAddr).Port) {
		t.Error("a port in use counted as free")
	}
}
