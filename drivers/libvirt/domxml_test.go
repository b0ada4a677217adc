package libvirt

import (
	"strings"
	"testing"
)

// TestUnmovableReason finds the devices that keep a domain from live
// migration, and nothing in a plain domain.
func TestUnmovableReason(t *testing.T) {
	wrap := func(devices string) string {
		return "<domain type='kvm'><name>x</name><devices><disk type='file'/>" + devices + "</devices></domain>"
	}
	tests := []struct {
		name, doc, want string
	}{
		{"plain", wrap("<interface type='network'/>"), ""},
		{"pci hostdev", wrap("<hostdev mode='subsystem' type='pci'><source/></hostdev>"), "host device passthrough (hostdev type pci)"},
		{"usb hostdev", wrap(`<hostdev mode="subsystem" type="usb"/>`), "hostdev type usb"},
		{"sr-iov interface", wrap("<interface type='hostdev'/>"), "network interface passthrough"},
		{"virtiofs", wrap("<filesystem type='mount'><driver type='virtiofs'/><target dir='share'/></filesystem>"), "virtiofs at share"},
		{"9p", wrap("<filesystem type='mount'><target dir='tag'/></filesystem>"), "9p at tag"},
		{"ivshmem", wrap("<shmem name='ring'/>"), "shared memory device ring"},
		{"tpm passthrough", wrap("<tpm model='tpm-tis'><backend type='passthrough'/></tpm>"), "TPM passthrough"},
		{"tpm emulator", wrap("<tpm model='tpm-crb'><backend type='emulator'/></tpm>"), ""},
		{"two reasons", wrap("<hostdev type='pci'/><shmem name='s'/>"), "hostdev type pci); shared memory device s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := unmovableReason(tt.doc)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("unmovableReason = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestDefinitionEdits renames a domain, leaving the rest (its UUIDs too)
// byte for byte.
func TestDefinitionEdits(t *testing.T) {
	const doc = `<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>web&amp;db</name>
  <uuid>c96e2760-94f4-4b43-b9d8-b1e91c1cc815</uuid>
  <sysinfo type='smbios'><system><entry name='manufacturer'>Herd</entry><entry name='uuid'>c96e2760-94f4-4b43-b9d8-b1e91c1cc815</entry></system></sysinfo>
  <devices><disk type='file'><uuid>not-the-domain-one</uuid></disk></devices>
  <qemu:commandline><qemu:arg value='-S'/></qemu:commandline>
</domain>`
	out := []byte(doc)
	id, err := readIdentity(out)
	if err != nil || id.Name != "web&db" || id.UUID != "c96e2760-94f4-4b43-b9d8-b1e91c1cc815" {
		t.Errorf("readIdentity = %+v, %v; want name web&db and its UUID", id, err)
	}

	renamed, err := withName(out, "web<2>")
	if err != nil {
		t.Fatalf("withName: %v", err)
	}
	if want := strings.Replace(string(out), "<name>web&amp;db</name>", "<name>web&lt;2&gt;</name>", 1); string(renamed) != want {
		t.Errorf("withName =\n%s\nwant\n%s", renamed, want)
	}
	if _, err := withName([]byte("<domain><name>a</name><name>b</name></domain>"), "c"); err == nil {
		t.Error("withName of a domain with two names succeeded, want an error")
	}
}

// TestUUIDText parses and formats UUIDs, rejecting what is not one.
func TestUUIDText(t *testing.T) {
	const s = "c96e2760-94f4-4b43-b9d8-b1e91c1cc815"
	u, err := parseUUID(s)
	if err != nil || formatUUID(u) != s {
		t.Errorf("parseUUID/formatUUID(%s) = %s, %v", s, formatUUID(u), err)
	}
	if u2, err := parseUUID(strings.ReplaceAll(s, "-", "")); err != nil || u2 != u {
		t.Errorf("parseUUID without dashes = %v, %v", u2, err)
	}
	for _, bad := range []string{"", "vm-1", s + "00", strings.Replace(s, "c", "g", 1)} {
		if _, err := parseUUID(bad); err == nil {
			t.Errorf("parseUUID(%q) succeeded", bad)
		}
	}
}
