// Package libvirttest runs real libvirtd daemons on this machine for tests,
// each standing for one host; only tests import it.
package libvirttest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Fixture is a set of libvirtd daemons on this machine, each standing for
// one host: its own /run/libvirt, /var/lib/libvirt, /var/cache/libvirt,
// /var/log/libvirt and /etc/libvirt (bind mounts in a private mount
// namespace), its own TCP port on 127.0.0.1, host UUID and range of QEMU
// migration ports. Live migrations between them work. It needs root (for
// the namespaces) and the Debian packages libvirt-daemon, libvirt-clients
// and qemu-system-x86 (`make test-deps` installs them); QEMU uses KVM when
// /dev/kvm works, TCG otherwise.
// Everything it starts is killed in t.Cleanup.
type Fixture struct {
	base     string
	virtType string // "kvm" or "qemu"
	emulator string
	firmware string // the guests' BIOS; empty for QEMU's default (SeaBIOS)
	hosts    []*fixtureHost
	byName   map[string]*fixtureHost
	fills    int
}

// Fixture daemons are tuned for tests: short timeouts, quick keepalive.
const (
	// CallTimeout is the libvirt call timeout drivers under test use.
	CallTimeout = 10 * time.Second
	// KeepaliveInterval is the libvirt keepalive drivers under test use.
	KeepaliveInterval = 2 * time.Second
	// Group is the host group of every fixture host.
	Group        = "fixture"
	fixtureStart = 30 * time.Second
	// fixturePackages are what `make test-deps` installs for the fixture.
	fixturePackages = "libvirt-daemon libvirt-clients qemu-system-x86"
)

// fixturePrograms must be on PATH.
var fixturePrograms = []string{"libvirtd", "virsh", "qemu-system-x86_64", "unshare", "mount"}

var (
	usersOnce sync.Once
	usersErr  error
	kvmOnce   sync.Once
	kvmOK     bool
)

// StartFixture starts hosts libvirtd daemons and waits until each answers
// on its port. Without the programs it needs, or without root, the test is
// skipped, except under CI=true, where it fails.
func StartFixture(t testing.TB, hosts int) *Fixture {
	t.Helper()
	if hosts < 1 {
		t.Fatalf("StartFixture: need at least one host, got %d", hosts)
	}
	specs := make([]FixtureHost, hosts)
	for i := range specs {
		specs[i].Name = fmt.Sprintf("lv%d", i+1)
	}
	return StartFixtureHosts(t, specs)
}

// FixtureHost describes one host of StartFixtureHosts.
type FixtureHost struct {
	Name string
	// NetNS, when set, is the network namespace (ip netns) libvirtd runs
	// in, listening on Addr (port 16509, migration ports from 49152);
	// otherwise it listens on a free port of 127.0.0.1.
	NetNS, Addr string
}

// StartFixtureHosts is StartFixture with named hosts, possibly each in a
// network namespace of its own.
func StartFixtureHosts(t testing.TB, specs []FixtureHost) *Fixture {
	t.Helper()
	hosts := len(specs)
	requireFixturePrograms(t)
	usersOnce.Do(func() { usersErr = ensureQEMUUsers() })
	if usersErr != nil {
		t.Fatalf("StartFixture: %v", usersErr)
	}
	kvmOnce.Do(func() { kvmOK = kvmUsable() })
	emulator, _ := exec.LookPath("qemu-system-x86_64")
	cleanupStaleFixtures(t)
	base, err := os.MkdirTemp("", "herd-libvirt-")
	if err != nil {
		t.Fatalf("StartFixture: %v", err)
	}
	f := &Fixture{base: base, virtType: "qemu", emulator: emulator, firmware: quickFirmware(), byName: make(map[string]*fixtureHost)}
	if kvmOK {
		f.virtType = "kvm"
	}
	t.Cleanup(f.close)
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatalf("StartFixture: %v", err)
	}
	if err := os.WriteFile(filepath.Join(base, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatalf("StartFixture: %v", err)
	}
	for _, spec := range specs {
		h, err := newFixtureHost(base, spec)
		if err != nil {
			t.Fatalf("StartFixture: %v", err)
		}
		f.hosts = append(f.hosts, h)
		f.byName[h.name] = h
	}
	start := time.Now()
	errs := make([]error, hosts)
	first := 0
	if cached, _ := filepath.Glob(filepath.Join(capabilitiesCache(), "*.xml")); len(cached) == 0 {
		// One libvirtd probes QEMU and fills the cache for the others.
		errs[0], first = f.hosts[0].start(), 1
	}
	var wg sync.WaitGroup
	for i, h := range f.hosts[first:] {
		wg.Go(func() { errs[first+i] = h.start() })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("StartFixture: %v", err)
		}
	}
	firmware := f.firmware
	if firmware == "" {
		firmware = "SeaBIOS: " + qbootROM + " not found"
	}
	t.Logf("libvirt fixture: %d libvirtd (%s, firmware %s) started in %v under %s", hosts, f.virtType, firmware, time.Since(start).Round(time.Millisecond), base)
	return f
}

// requireFixturePrograms skips (or fails, under CI) when a program is
// missing or when not root.
func requireFixturePrograms(t testing.TB) {
	t.Helper()
	ci := os.Getenv("CI") == "true"
	missing := missingPrograms()
	switch {
	case len(missing) > 0 && ci:
		t.Fatalf("libvirt fixture: %v missing; needs Debian packages %s (make test-deps)", missing, fixturePackages)
	case len(missing) > 0:
		t.Skipf("libvirt fixture: %v missing; needs Debian packages %s: run make test-deps as root", missing, fixturePackages)
	case os.Getuid() != 0 && ci:
		t.Fatal("libvirt fixture needs root (mount namespaces, libvirtd)")
	case os.Getuid() != 0:
		t.Skip("libvirt fixture needs root (mount namespaces, libvirtd)")
	}
}

func missingPrograms() []string {
	var missing []string
	for _, p := range fixturePrograms {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	return missing
}

// ensureQEMUUsers creates the groups and user Debian's libvirtd expects.
func ensureQEMUUsers() error {
	for _, g := range []string{"kvm", "libvirt-qemu"} {
		if _, err := user.LookupGroup(g); err != nil {
			if out, err := exec.Command("groupadd", "-r", g).CombinedOutput(); err != nil {
				return fmt.Errorf("groupadd %s: %w: %s", g, err, out)
			}
		}
	}
	if _, err := user.Lookup("libvirt-qemu"); err != nil {
		if out, err := exec.Command("useradd", "-r", "-g", "kvm", "-G", "libvirt-qemu", "libvirt-qemu").CombinedOutput(); err != nil {
			return fmt.Errorf("useradd libvirt-qemu: %w: %s", err, out)
		}
	}
	return nil
}

// qbootROM is QEMU's minimal BIOS (Debian: qemu-system-data). It brings a
// guest with nothing to boot to a halt in about 0.05 CPU-seconds; SeaBIOS
// spends 3 CPU-seconds on it under nested KVM, where every exit to the
// hypervisor is costly (a CI runner or cloud VM), and keeps busy for 4 s.
// Twenty VMs started at once then take the machine's CPU from libvirtd and
// QEMU starting the next ones.
const qbootROM = "/usr/share/qemu/qboot.rom"

// quickFirmware is qbootROM when it is installed, else "" (SeaBIOS).
func quickFirmware() string {
	if st, err := os.Stat(qbootROM); err == nil && st.Mode().IsRegular() {
		return qbootROM
	}
	return ""
}

// Firmware is the BIOS fixture VMs boot: qbootROM, or "" for QEMU's
// default (SeaBIOS) where qboot is not installed.
func (f *Fixture) Firmware() string { return f.firmware }

// kvmUsable reports whether this process can create a KVM virtual machine.
func kvmUsable() bool {
	const kvmGetAPIVersion, kvmCreateVM = 0xAE00, 0xAE01
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if v, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), kvmGetAPIVersion, 0); errno != 0 || v != 12 {
		return false
	}
	vm, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), kvmCreateVM, 0)
	if errno != 0 {
		return false
	}
	syscall.Close(int(vm))
	return true
}

// Host is what a driver needs to reach one fixture host.
type Host struct {
	Name, URI, Group string
	// MigrationAddress is where QEMU migration streams to the host go.
	MigrationAddress string
}

// Hosts lists every host's name, URI, group and migration address, in the
// order they were started; a driver configuration for them takes
// CallTimeout and KeepaliveInterval.
func (f *Fixture) Hosts() []Host {
	hosts := make([]Host, len(f.hosts))
	for i, h := range f.hosts {
		hosts[i] = Host{Name: h.name, URI: h.uri(), Group: Group, MigrationAddress: h.addr}
	}
	return hosts
}

// HostNames lists the hosts: lv1, lv2….
func (f *Fixture) HostNames() []string {
	names := make([]string, len(f.hosts))
	for i, h := range f.hosts {
		names[i] = h.name
	}
	return names
}

// URI is host's libvirt URI, qemu+tcp://127.0.0.1:PORT/system.
func (f *Fixture) URI(host string) string {
	return f.mustHost(host).uri()
}

// TestDriverURI is the URI of libvirt's test driver loaded from file (an
// absolute path to a <node> XML), served by host's libvirtd.
func (f *Fixture) TestDriverURI(host, file string) string {
	h := f.mustHost(host)
	return fmt.Sprintf("test+tcp://%s%s", net.JoinHostPort(h.addr, strconv.Itoa(h.port)), file)
}

// VirtType is the domain type fixture VMs use: "kvm" or "qemu".
func (f *Fixture) VirtType() string { return f.virtType }

// Kill kills host's libvirtd and its QEMU processes, as a host crash would.
func (f *Fixture) Kill(t testing.TB, host string) {
	t.Helper()
	if err := f.mustHost(host).kill(); err != nil {
		t.Fatalf("kill %s: %v", host, err)
	}
}

// Restart starts host's libvirtd again after Kill (or kills it first); its
// domains are kept, shut off.
func (f *Fixture) Restart(t testing.TB, host string) {
	t.Helper()
	f.restart(t, "restart", host, false)
}

// Boot starts host again as a power cycle does: after Kill (or killing it
// first), with its runtime state gone (/run is a tmpfs on a real host), so
// that libvirtd does not list the domains it ran before as running while it
// finds their QEMU processes gone. Domains are kept, shut off.
func (f *Fixture) Boot(t testing.TB, host string) {
	t.Helper()
	f.restart(t, "boot", host, true)
}

// restart kills host's libvirtd, empties its run directory when clearRun,
// and starts it again.
func (f *Fixture) restart(t testing.TB, what, host string, clearRun bool) {
	t.Helper()
	h := f.mustHost(host)
	err := h.kill()
	if err == nil && clearRun {
		run := filepath.Join(h.dir, "run")
		if err = os.RemoveAll(run); err == nil {
			err = os.MkdirAll(run, 0o755)
		}
	}
	if err == nil {
		err = h.start()
	}
	if err != nil {
		t.Fatalf("%s %s: %v", what, host, err)
	}
}

// Freeze stops host's libvirtd (SIGSTOP): its socket accepts connections
// but nothing answers, as with a hung daemon or a cut link. Its VMs run on.
func (f *Fixture) Freeze(t testing.TB, host string) {
	t.Helper()
	if err := f.mustHost(host).signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("freeze %s: %v", host, err)
	}
}

// Thaw resumes a frozen libvirtd (SIGCONT).
func (f *Fixture) Thaw(t testing.TB, host string) {
	t.Helper()
	if err := f.mustHost(host).signal(syscall.SIGCONT); err != nil {
		t.Fatalf("thaw %s: %v", host, err)
	}
}

func (f *Fixture) mustHost(name string) *fixtureHost {
	h, ok := f.byName[name]
	if !ok {
		panic(fmt.Sprintf("libvirt fixture: no host %q", name))
	}
	return h
}

// close kills every process of every host and removes the directories.
func (f *Fixture) close() {
	var wg sync.WaitGroup
	for _, h := range f.hosts {
		wg.Go(func() { h.kill() })
	}
	wg.Wait()
	os.RemoveAll(f.base)
}

// tail is the end of out, for error messages.
func tail(out []byte, n int) string {
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return string(out)
}
