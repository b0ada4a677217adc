package libvirttest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// qemuCPU is the CPU time QEMU process pid has used (false once it is gone).
func qemuCPU(pid int) (time.Duration, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, false
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond, true // USER_HZ
}

// TestFixtureVMSettlesCheaply starts a fixture VM and waits until its QEMU
// stops using CPU: its firmware must find nothing to boot and go quiet for
// little CPU, or twenty VMs started at once (a crashed host's, recreated
// on the bed) take the machine from the libvirtd and QEMU that start the
// next ones. SeaBIOS under nested KVM spends 3 CPU-seconds on it.
func TestFixtureVMSettlesCheaply(t *testing.T) {
	f := StartFixture(t, 1)
	f.DefineVM(t, "lv1", "quiet", 64, true)
	data, err := os.ReadFile(filepath.Join(f.hosts[0].dir, "run", "qemu", "quiet.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	// Quiet: under 20 ms of CPU over the last second.
	const budget = time.Second
	var used time.Duration
	var window []time.Duration
	deadline := time.Now().Add(30 * time.Second)
	for {
		cpu, ok := qemuCPU(pid)
		if !ok {
			t.Fatalf("QEMU (pid %d) of the fixture VM is gone", pid)
		}
		used, window = cpu, append(window, cpu)
		if len(window) > 5 {
			window = window[1:]
		}
		if len(window) == 5 && window[4]-window[0] < 20*time.Millisecond {
			break
		}
		if used > budget || time.Now().After(deadline) {
			t.Fatalf("fixture VM (%s, firmware %q) still busy after %v of CPU", f.VirtType(), f.Firmware(), used)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("fixture VM (%s, firmware %q) quiet after %v of CPU", f.VirtType(), f.Firmware(), used)
}
