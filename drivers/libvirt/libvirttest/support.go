package libvirttest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-project/herd/internal/testport"
)

// capabilitiesCache is where fixtures share libvirtd's cache of QEMU's
// capabilities, which takes seconds to build.
func capabilitiesCache() string {
	return filepath.Join(os.TempDir(), "herd-libvirt-capabilities")
}

// loadCapabilities copies the shared cache into a host's cache directory;
// libvirtd checks it against QEMU's binary and ignores it when stale.
func loadCapabilities(dir string) {
	dst := filepath.Join(dir, "cache", "qemu", "capabilities")
	files, _ := filepath.Glob(filepath.Join(capabilitiesCache(), "*.xml"))
	if len(files) == 0 || os.MkdirAll(dst, 0o755) != nil {
		return
	}
	for _, f := range files {
		if data, err := os.ReadFile(f); err == nil {
			os.WriteFile(filepath.Join(dst, filepath.Base(f)), data, 0o644)
		}
	}
}

// saveCapabilities copies a host's capabilities cache to the shared one.
func saveCapabilities(dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "cache", "qemu", "capabilities", "*.xml"))
	if len(files) == 0 || os.MkdirAll(capabilitiesCache(), 0o755) != nil {
		return
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		tmp, err := os.CreateTemp(capabilitiesCache(), ".tmp-*")
		if err != nil {
			return
		}
		_, werr := tmp.Write(data)
		if cerr := tmp.Close(); werr != nil || cerr != nil {
			os.Remove(tmp.Name())
			continue
		}
		os.Rename(tmp.Name(), filepath.Join(capabilitiesCache(), filepath.Base(f)))
	}
}

// killNamespace SIGKILLs every process in mount namespace ns and waits
// (a little) until they are gone.
func killNamespace(ns string) {
	var killed []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && link == ns {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed = append(killed, pid)
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range killed {
		for time.Now().Before(deadline) {
			// Gone once /proc no longer shows it in the namespace (a
			// zombie has no namespace links left).
			if link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err != nil || link != ns {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// killPIDFiles SIGKILLs the QEMU processes whose PID files match pattern.
func killPIDFiles(pattern string) {
	files, _ := filepath.Glob(pattern)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && strings.HasPrefix(filepath.Base(exe), "qemu-system") {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// cleanupStaleFixtures kills what fixtures of dead test processes left
// running (a test binary killed before its cleanup) and removes their
// directories.
func cleanupStaleFixtures(t testing.TB) {
	owners, _ := filepath.Glob(filepath.Join(os.TempDir(), "herd-libvirt-*", "owner"))
	for _, owner := range owners {
		data, err := os.ReadFile(owner)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(string(data))
		if err != nil || syscall.Kill(pid, 0) == nil || errors.Is(syscall.Kill(pid, 0), syscall.EPERM) {
			continue
		}
		base := filepath.Dir(owner)
		nsFiles, _ := filepath.Glob(filepath.Join(base, "*", "ns"))
		for _, f := range nsFiles {
			if ns, err := os.ReadFile(f); err == nil && len(ns) > 0 {
				killNamespace(string(ns))
			}
			killPIDFiles(filepath.Join(filepath.Dir(f), "run", "qemu", "*.pid"))
		}
		os.RemoveAll(base)
		t.Logf("libvirt fixture: removed stale fixture %s of dead process %d", base, pid)
	}
}

// freePort is a port free on 127.0.0.1, below the ephemeral range so that
// no outgoing connection takes it before libvirtd binds it (testport).
func freePort() (int, error) { return testport.Port() }

// freePortRange is the first of n consecutive free ports (testport).
func freePortRange(n int) (int, error) { return testport.Range(n) }

// NewUUID is a random (version 4) UUID.
func NewUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
