package libvirt

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/drivers/libvirt/libvirttest"
)

// testNodeDomain is one domain of a test-driver node file, sized like a
// real server's XML (disks, NICs, consoles).
const testNodeDomain = `  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>vm-%03d</name>
    <uuid>%s</uuid>
    <memory unit='MiB'>%d</memory>
    <vcpu>%d</vcpu>
    <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
    <features><acpi/><apic/></features>
    <clock offset='utc'/>
    <devices>
      <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/libvirt/images/vm-%03d.qcow2'/><target dev='vda' bus='virtio'/></disk>
      <disk type='file' device='cdrom'><target dev='sda' bus='sata'/><readonly/></disk>
      <interface type='network'><mac address='52:54:00:00:%02x:%02x'/><source network='default'/><model type='virtio'/></interface>
      <interface type='bridge'><source bridge='br0'/><model type='virtio'/></interface>
      <serial type='pty'><target port='0'/></serial>
      <console type='pty'><target type='serial' port='0'/></console>
      <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
      <graphics type='vnc' port='-1' autoport='yes'/>
      <video><model type='virtio'/></video>%s
    </devices>%s
  </domain>
`

// writeTestNode writes a test-driver node file with n domains: every 8th
// shut off, every 50th with a host device; and returns its path and the
// domains' UUIDs.
func writeTestNode(t testing.TB, n int) (string, []string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("<node>\n  <cpu><mhz>2600</mhz><model>x86_64</model><active>64</active><nodes>2</nodes><sockets>2</sockets><cores>16</cores><threads>2</threads></cpu>\n  <memory>536870912</memory>\n")
	ids := make([]string, n)
	for i := range n {
		ids[i] = libvirttest.NewUUID()
		var hostdev, runstate string
		if i%50 == 49 {
			hostdev = "\n      <hostdev mode='subsystem' type='pci'><source><address domain='0' bus='3' slot='0' function='0'/></source></hostdev>"
		}
		if i%8 == 7 {
			runstate = "\n    <test:runstate>5</test:runstate>"
		}
		fmt.Fprintf(&b, testNodeDomain, i, ids[i], 1024<<(i%4), 1+i%8, i, i/256, i%256, hostdev, runstate)
	}
	b.WriteString("</node>\n")
	path := filepath.Join(t.TempDir(), "node.xml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, ids
}

// testDriverConfig is a driver configuration for libvirt's test driver
// loaded from file, served by f's first libvirtd.
func testDriverConfig(f *libvirttest.Fixture, file string) func(*Config) {
	return func(c *Config) {
		c.Hosts = []HostConfig{{Name: "test", URI: f.TestDriverURI("lv1", file), Group: "t"}}
	}
}

// TestInventoryTestDriver lists 200 domains of libvirt's test driver:
// every one, with its state, size and movability.
func TestInventoryTestDriver(t *testing.T) {
	f := libvirttest.StartFixture(t, 1)
	file, ids := writeTestNode(t, 200)
	d := newTestDriver(t, f, testDriverConfig(f, file))
	inv := inventory(t, d)
	if len(inv.Hosts) != 1 || inv.Hosts[0].CPUs != 64 || inv.Hosts[0].MemoryBytes != 512<<30 || inv.Hosts[0].CPUMHz != 2600 {
		t.Errorf("hosts %+v, want one with 64 CPUs at 2600 MHz and 512 GiB", inv.Hosts)
	}
	if len(inv.VMs) != len(ids) {
		t.Fatalf("inventory has %d VMs, want %d", len(inv.VMs), len(ids))
	}
	for i, id := range ids {
		vms := inv.Copies(id)
		if len(vms) != 1 {
			t.Fatalf("VM %d (%s) listed %d times", i, id, len(vms))
		}
		vm := vms[0]
		want := drivers.VM{ID: id, Name: fmt.Sprintf("vm-%03d", i), Host: "test", MemoryBytes: (1024 << (i % 4)) * mib, VCPUs: 1 + i%8, Power: drivers.PoweredOn}
		if i%8 == 7 {
			want.Power = drivers.PoweredOff
		}
		if vm.ID != want.ID || vm.Name != want.Name || vm.Host != want.Host || vm.MemoryBytes != want.MemoryBytes || vm.VCPUs != want.VCPUs || vm.Power != want.Power {
			t.Errorf("VM %d = %+v, want %+v", i, vm, want)
		}
		if (i%50 == 49) != (vm.Unmovable != "") {
			t.Errorf("VM %d unmovable %q, want it set only for every 50th", i, vm.Unmovable)
		}
	}
}

// BenchmarkInventory200Domains measures Inventory over 200 domains of
// libvirt's test driver (one libvirtd, over TCP).
func BenchmarkInventory200Domains(b *testing.B) {
	f := libvirttest.StartFixture(b, 1)
	file, ids := writeTestNode(b, 200)
	d := newTestDriver(b, f, testDriverConfig(f, file))
	if inv := inventory(b, d); len(inv.VMs) != len(ids) {
		b.Fatalf("inventory has %d VMs, want %d", len(inv.VMs), len(ids))
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := d.Inventory(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLiveMigrationOverhead live-migrates one tiny VM there and back
// through the driver and through virsh (same flags, same hosts),
// alternately, and reports the ratio of their times.
func BenchmarkLiveMigrationOverhead(b *testing.B) {
	f := libvirttest.StartFixture(b, 2)
	const name = "bench1"
	id := f.DefineVM(b, "lv1", name, 64, true)
	d := newTestDriver(b, f, nil)
	virsh := func(from, to string) error {
		out, err := exec.Command("virsh", "-c", f.URI(from), "migrate", "--live", "--p2p", "--persistent", "--undefinesource",
			name, f.URI(to), "tcp://127.0.0.1", "--listen-address", "127.0.0.1").CombinedOutput()
		if err != nil {
			return fmt.Errorf("virsh migrate %s → %s: %w: %s", from, to, err, out)
		}
		return nil
	}
	driver := func(_, to string) error {
		return d.Migrate(testContext(b, time.Minute), id, to, drivers.Live)
	}
	var took [2]time.Duration // driver, virsh
	var n int
	b.ResetTimer()
	for b.Loop() {
		for i, migrate := range []func(string, string) error{driver, virsh} {
			for _, hop := range [][2]string{{"lv1", "lv2"}, {"lv2", "lv1"}} {
				start := time.Now()
				if err := migrate(hop[0], hop[1]); err != nil {
					b.Fatal(err)
				}
				took[i] += time.Since(start)
			}
		}
		n += 2
	}
	b.ReportMetric(float64(took[0].Milliseconds())/float64(n), "driver-ms/migration")
	b.ReportMetric(float64(took[1].Milliseconds())/float64(n), "virsh-ms/migration")
	b.ReportMetric(took[0].Seconds()/took[1].Seconds(), "driver/virsh")
}
