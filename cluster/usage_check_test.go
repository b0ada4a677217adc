package cluster

import (
	"flag"
	"os"
	"testing"
)

// TestMain makes every state of this package's tests track its usage, and
// every command applied check it against a fresh count (verifyUsage).
// Benchmarks run without the check: it counts every VM twice per command.
func TestMain(m *testing.M) {
	flag.Parse()
	checkUsage = flag.Lookup("test.bench").Value.String() == ""
	os.Exit(m.Run())
}
