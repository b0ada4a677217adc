//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// cpuSample is the machine's busy CPU time and each process's CPU time at
// one moment, to tell what a scenario's window cost and who spent it: the
// bed's QEMUs, libvirtds and herds, or anything else (other work on the
// machine, the kernel's threads, the test itself).
type cpuSample struct {
	busy  time.Duration
	procs map[int]procCPU
}

type procCPU struct {
	comm string
	used time.Duration
}

// sampleCPU reads /proc/stat and every /proc/PID/stat.
func sampleCPU() cpuSample {
	s := cpuSample{procs: map[int]procCPU{}}
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := bytes.Cut(data, []byte("\n"))
		f := bytes.Fields(line)
		// cpu user nice system idle iowait irq softirq steal …
		for i := 1; i < len(f) && i <= 8; i++ {
			if i == 4 || i == 5 {
				continue
			}
			n, _ := strconv.ParseInt(string(f[i]), 10, 64)
			s.busy += time.Duration(n) * clockTick
		}
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
		if open < 0 || end < open {
			continue
		}
		f := bytes.Fields(data[end+1:])
		if len(f) < 13 {
			continue
		}
		utime, _ := strconv.ParseInt(string(f[11]), 10, 64)
		stime, _ := strconv.ParseInt(string(f[12]), 10, 64)
		s.procs[pid] = procCPU{comm: string(data[open+1 : end]), used: time.Duration(utime+stime) * clockTick}
	}
	return s
}

// cpuSpent is what the machine spent between two samples: busy in all,
// and by the bed's QEMUs, libvirtds and herds (processes that exited
// between the samples are not counted); other is the rest.
func cpuSpent(from, to cpuSample) map[string]time.Duration {
	out := map[string]time.Duration{"cpu_busy": to.busy - from.busy}
	var bed time.Duration
	for pid, p := range to.procs {
		used := p.used
		if was, ok := from.procs[pid]; ok && was.comm == p.comm {
			used -= was.used
		}
		key := ""
		switch p.comm {
		case "qemu-system-x86":
			key = "cpu_qemu"
		case "libvirtd":
			key = "cpu_libvirtd"
		case "herd":
			key = "cpu_herd"
		default:
			continue
		}
		out[key] += used
		bed += used
	}
	out["cpu_other"] = max(out["cpu_busy"]-bed, 0)
	return out
}

// waitEvery is testutil.WaitFor polling every interval: for waits whose
// result carries its own time, so that polling sooner only takes CPU from
// what is measured.
func waitEvery(t *testing.T, timeout, interval time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(interval)
	}
}
