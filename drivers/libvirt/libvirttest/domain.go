package libvirttest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/herd-project/herd/drivers"
)

// VMSpec describes a fixture domain: diskless, no network, firmware only
// (qboot, where QEMU ships it, finds nothing to boot and halts; SeaBIOS
// otherwise, which waits), so it runs for ever on a few MiB of host memory.
type VMSpec struct {
	Name string
	// MemoryMiB is the guest's memory; 0 means 64.
	MemoryMiB int
	// Running starts the domain once defined.
	Running bool
	// UUID to define the domain with; empty lets libvirt choose.
	UUID string
	// FillMiB loads that much random data into guest memory at 16 MiB
	// (QEMU's generic loader), so that a live migration has real pages to
	// copy and a bandwidth cap slows it down; 0 means none. It must leave
	// 16 MiB of MemoryMiB free above it.
	FillMiB int
	// Devices is extra XML put inside <devices>, e.g. a <hostdev>.
	Devices string
}

const fixtureDomainXML = `<domain type='%s'%s>
  <name>%s</name>%s
  <memory unit='MiB'>%d</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>%s</os>
  <features><acpi/></features>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>%s</emulator>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>%s
  </devices>%s
</domain>
`

// DomainXML is the XML DefineDomain defines for spec.
func (f *Fixture) DomainXML(t testing.TB, spec VMSpec) string {
	t.Helper()
	if spec.MemoryMiB == 0 {
		spec.MemoryMiB = 64
	}
	var ns, uuid, extra string
	if spec.UUID != "" {
		uuid = "\n  <uuid>" + spec.UUID + "</uuid>"
	}
	if spec.FillMiB > 0 {
		if spec.FillMiB+32 > spec.MemoryMiB {
			t.Fatalf("fixture VM %s: FillMiB %d needs MemoryMiB of at least %d", spec.Name, spec.FillMiB, spec.FillMiB+32)
		}
		ns = ` xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'`
		extra = fmt.Sprintf("\n  <qemu:commandline>\n    <qemu:arg value='-device'/>\n    <qemu:arg value='loader,file=%s,addr=0x1000000,force-raw=on'/>\n  </qemu:commandline>", f.fillFile(t, spec.FillMiB))
	}
	devices := ""
	if spec.Devices != "" {
		devices = "\n    " + strings.TrimSpace(spec.Devices)
	}
	loader := ""
	if f.firmware != "" {
		loader = "<loader readonly='yes' type='rom'>" + f.firmware + "</loader>"
	}
	return fmt.Sprintf(fixtureDomainXML, f.virtType, ns, spec.Name, uuid, spec.MemoryMiB, loader, f.emulator, devices, extra)
}

// fillFile writes a file of mib MiB of random data for the generic loader.
func (f *Fixture) fillFile(t testing.TB, mib int) string {
	f.fills++
	path := filepath.Join(f.base, fmt.Sprintf("fill-%d.bin", f.fills))
	data := make([]byte, mib<<20)
	rand.Read(data)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("fixture: write %s: %v", path, err)
	}
	return path
}

// DefineVM defines a tiny domain on host, started when running, and
// returns its UUID.
func (f *Fixture) DefineVM(t testing.TB, host, name string, memMiB int, running bool) string {
	t.Helper()
	return f.DefineDomain(t, host, VMSpec{Name: name, MemoryMiB: memMiB, Running: running})
}

// DefineDomain defines the domain spec describes on host, starts it when
// spec.Running, and returns its UUID.
func (f *Fixture) DefineDomain(t testing.TB, host string, spec VMSpec) string {
	t.Helper()
	return f.DefineXML(t, host, f.DomainXML(t, spec), spec.Running)
}

// DefineXML defines a domain from doc on host, starts it when running,
// and returns its UUID.
func (f *Fixture) DefineXML(t testing.TB, host, doc string, running bool) string {
	t.Helper()
	var id string
	f.withConn(t, host, func(l *golibvirt.Libvirt) error {
		dom, err := l.DomainDefineXML(doc)
		if err != nil {
			return fmt.Errorf("define: %w", err)
		}
		id = formatUUID(dom.UUID)
		if running {
			if err := l.DomainCreate(dom); err != nil {
				return fmt.Errorf("start %s: %w", dom.Name, err)
			}
		}
		return nil
	})
	return id
}

// DomainStates reads host's domains, by UUID, straight from its libvirtd.
func (f *Fixture) DomainStates(t testing.TB, host string) map[string]drivers.PowerState {
	t.Helper()
	states := map[string]drivers.PowerState{}
	f.withConn(t, host, func(l *golibvirt.Libvirt) error {
		doms, _, err := l.ConnectListAllDomains(1, golibvirt.ConnectListDomainsActive|golibvirt.ConnectListDomainsInactive)
		if err != nil {
			return err
		}
		for _, dom := range doms {
			state, _, err := l.DomainGetState(dom, 0)
			if err != nil {
				if golibvirt.IsNotFound(err) {
					continue // gone since the listing (an aborted incoming migration)
				}
				return fmt.Errorf("state of %s: %w", dom.Name, err)
			}
			states[formatUUID(dom.UUID)] = powerState(golibvirt.DomainState(state))
		}
		return nil
	})
	return states
}

// RemoveVMs destroys and undefines host's domains whose names start with
// prefix, one call each (a QEMU can take seconds to exit), and returns how
// many it removed.
func (f *Fixture) RemoveVMs(t testing.TB, host, prefix string) int {
	t.Helper()
	var names []string
	f.withConn(t, host, func(l *golibvirt.Libvirt) error {
		doms, _, err := l.ConnectListAllDomains(1, golibvirt.ConnectListDomainsActive|golibvirt.ConnectListDomainsInactive)
		for _, dom := range doms {
			if strings.HasPrefix(dom.Name, prefix) {
				names = append(names, dom.Name)
			}
		}
		return err
	})
	for _, name := range names {
		f.withConn(t, host, func(l *golibvirt.Libvirt) error {
			dom, err := l.DomainLookupByName(name)
			if golibvirt.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := l.DomainDestroy(dom); err != nil && !golibvirt.IsNotFound(err) && !isOperationInvalid(err) {
				return fmt.Errorf("destroy %s: %w", name, err)
			}
			if err := l.DomainUndefineFlags(dom, golibvirt.DomainUndefineNvram); err != nil && !golibvirt.IsNotFound(err) {
				return fmt.Errorf("undefine %s: %w", name, err)
			}
			return nil
		})
	}
	return len(names)
}

// DomainXMLOf reads the live XML of domain id on host.
func (f *Fixture) DomainXMLOf(t testing.TB, host, id string) string {
	t.Helper()
	var uuid golibvirt.UUID
	if raw, err := hex.DecodeString(strings.ReplaceAll(id, "-", "")); err != nil || len(raw) != len(uuid) {
		t.Fatalf("fixture: VM id %q is not a UUID", id)
	} else {
		copy(uuid[:], raw)
	}
	var doc string
	f.withConn(t, host, func(l *golibvirt.Libvirt) error {
		dom, err := l.DomainLookupByUUID(uuid)
		if err != nil {
			return err
		}
		doc, err = l.DomainGetXMLDesc(dom, 0)
		return err
	})
	return doc
}

// formatUUID writes a UUID as libvirt does.
func formatUUID(u golibvirt.UUID) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// powerStates is how the driver reports each libvirt domain state (any
// other state is running).
var powerStates = map[golibvirt.DomainState]drivers.PowerState{
	golibvirt.DomainShutoff: drivers.PoweredOff, golibvirt.DomainCrashed: drivers.PoweredOff,
	golibvirt.DomainPaused: drivers.Suspended, golibvirt.DomainPmsuspended: drivers.Suspended,
}

func powerState(s golibvirt.DomainState) drivers.PowerState {
	if p, ok := powerStates[s]; ok {
		return p
	}
	return drivers.PoweredOn
}

// withConn runs fn on a fresh connection to host, failing t on an error
// or after CallTimeout.
func (f *Fixture) withConn(t testing.TB, host string, fn func(*golibvirt.Libvirt) error) {
	t.Helper()
	u, err := url.Parse(f.URI(host))
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		l, err := golibvirt.ConnectToURI(u)
		if err == nil {
			err = fn(l)
			l.Disconnect()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("fixture host %s: %v", host, err)
		}
	case <-time.After(CallTimeout):
		t.Fatalf("fixture host %s: no answer in %v", host, CallTimeout)
	}
}

// isOperationInvalid reports whether err is libvirt's "operation invalid"
// (destroying a domain that is not running).
func isOperationInvalid(err error) bool {
	var lerr golibvirt.Error
	return errors.As(err, &lerr) && golibvirt.ErrorNumber(lerr.Code) == golibvirt.ErrOperationInvalid
}

// Identity is what makes a domain the same machine to its guest and to
// what keys on it: its UUID, the SMBIOS system UUID QEMU gives the guest
// (the <sysinfo> one, else the domain's), its name and MAC addresses.
type Identity struct {
	UUID, SMBIOS, Name string
	MACs               []string
}

// IdentityOf reads the identity of domain id on host from its XML, as
// virsh dumpxml shows it.
func (f *Fixture) IdentityOf(t testing.TB, host, id string) Identity {
	t.Helper()
	return ParseIdentity(t, f.DomainXMLOf(t, host, id))
}

// ParseIdentity reads a domain XML's identity.
func ParseIdentity(t testing.TB, doc string) Identity {
	t.Helper()
	var x struct {
		Name    string `xml:"name"`
		UUID    string `xml:"uuid"`
		Sysinfo struct {
			Entries []struct {
				Name  string `xml:"name,attr"`
				Value string `xml:",chardata"`
			} `xml:"system>entry"`
		} `xml:"sysinfo"`
		MACs []struct {
			Address string `xml:"address,attr"`
		} `xml:"devices>interface>mac"`
	}
	if err := xml.Unmarshal([]byte(doc), &x); err != nil {
		t.Fatalf("fixture: domain XML: %v", err)
	}
	id := Identity{UUID: x.UUID, SMBIOS: x.UUID, Name: x.Name}
	for _, e := range x.Sysinfo.Entries {
		if e.Name == "uuid" {
			id.SMBIOS = e.Value
		}
	}
	for _, m := range x.MACs {
		id.MACs = append(id.MACs, m.Address)
	}
	return id
}
