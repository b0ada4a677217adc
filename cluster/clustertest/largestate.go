// Package clustertest builds replicated states for the tests and benchmarks
// of other packages. Only tests import it.
package clustertest

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/vmdef"
)

// LargeState builds a synthetic inventory: hosts with vms VMs in all, each
// with a small definition (LargeStateDef for realistic ones), and a full
// event log.
func LargeState(hosts, vms int) *cluster.State {
	return LargeStateDef(hosts, vms, SmallDefinitionBytes)
}

// SmallDefinitionBytes selects LargeStateDef's historical definition: one
// short vSphere-style JSON object, the same for every VM (about 120 bytes).
const SmallDefinitionBytes = 0

// LargeStateDef builds a synthetic inventory of hosts and vms VMs in all.
// With defBytes 0 every VM carries the same short definition; otherwise
// three VMs in four carry a libvirt domain XML and one in four a vSphere
// definition with its disks, controllers and adapters, each written for
// that VM (name, UUID, MACs, disk paths) and padded with the devices real
// VMs carry to about defBytes.
func LargeStateDef(hosts, vms, defBytes int) *cluster.State {
	s := cluster.NewState()
	d := &cluster.InventoryDiff{Driver: "dc"}
	for i := 0; i < hosts; i++ {
		d.UpsertHosts = append(d.UpsertHosts, cluster.Host{Name: fmt.Sprintf("host-%05d", i), Group: fmt.Sprintf("cl-%02d", i/32),
			MemoryBytes: 1 << 40, CPUs: 128, CPUMHz: 128 * 2600, Connection: cluster.Connected, Labels: map[string]string{"rack": strconv.Itoa(i / 40)}})
	}
	small := []byte(`{"name":"vm","memoryMB":4096,"numCPU":4,"guestId":"otherGuest64","datastore":"[LocalDS_0] vm/vm.vmx"}`)
	for i := 0; i < vms; i++ {
		vm := cluster.VM{ID: fmt.Sprintf("4210%04x-0000-0000-0000-%012x", i%65536, i), Name: fmt.Sprintf("vm-%06d", i),
			Host: fmt.Sprintf("host-%05d", i%hosts), MemoryBytes: int64(1+i%16) << 30, VCPUs: 1 + i%8, Power: cluster.PoweredOn}
		switch {
		case defBytes == SmallDefinitionBytes:
			vm.Definition = vmdef.New(small)
		case i%4 == 3:
			vm.Definition = vmdef.New(VSphereDefinition(vm, defBytes))
		default:
			vm.Definition = vmdef.New(LibvirtDomainXML(vm, defBytes))
		}
		d.UpsertVMs = append(d.UpsertVMs, vm)
	}
	for i := 0; i < cluster.DefaultEventRetention; i++ {
		d.Events = append(d.Events, cluster.Event{Time: time.Unix(int64(i), 0).UTC(), Type: "inventory.vm_added", Actor: "inventory-sync", Host: "host-00001", VM: "x", Message: "VM vm-000001 added on host-00001 (4096 MiB, 4 vCPUs, running)"})
	}
	s.Apply(d, 1)
	return s
}

// mac is the i-th adapter's MAC address of VM number n.
func mac(prefix string, n, i int) string {
	return fmt.Sprintf("%s:%02x:%02x:%02x", prefix, (n>>12)&0xff, (n>>4)&0xff, (n&0xf)<<4|i&0xf)
}

// LibvirtDomainXML is the domain XML virt-install writes for a q35 guest
// with two disks, a CD-ROM and two adapters, padded with PCIe root ports
// (virt-install adds 14 of them) to at least size bytes.
func LibvirtDomainXML(vm cluster.VM, size int) []byte {
	n, _ := strconv.Atoi(strings.TrimPrefix(vm.Name, "vm-"))
	var b strings.Builder
	fmt.Fprintf(&b, `<domain type='kvm'>
  <name>%s</name>
  <uuid>%s</uuid>
  <metadata>
    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
      <libosinfo:os id="http://debian.org/debian/12"/>
    </libosinfo:libosinfo>
  </metadata>
  <memory unit='KiB'>%d</memory>
  <currentMemory unit='KiB'>%d</currentMemory>
  <vcpu placement='static'>%d</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
    <vmport state='off'/>
  </features>
  <cpu mode='host-passthrough' check='none' migratable='on'/>
  <clock offset='utc'>
    <timer name='rtc' tickpolicy='catchup'/>
    <timer name='pit' tickpolicy='delay'/>
    <timer name='hpet' present='no'/>
  </clock>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <pm>
    <suspend-to-mem enabled='no'/>
    <suspend-to-disk enabled='no'/>
  </pm>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
`, vm.Name, vm.ID, vm.MemoryBytes>>10, vm.MemoryBytes>>10, vm.VCPUs)
	for d, dev := range []string{"vda", "vdb"} {
		fmt.Fprintf(&b, `    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none' io='native' discard='unmap'/>
      <source file='/var/lib/libvirt/images/%s-%s.qcow2'/>
      <target dev='%s' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x0%d' slot='0x00' function='0x0'/>
    </disk>
`, vm.Name, dev, dev, 4+d)
	}
	b.WriteString(`    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
      <address type='drive' controller='0' bus='0' target='0' unit='0'/>
    </disk>
    <controller type='usb' index='0' model='qemu-xhci' ports='15'>
      <address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>
    </controller>
    <controller type='sata' index='0'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x1f' function='0x2'/>
    </controller>
    <controller type='virtio-serial' index='0'>
      <address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>
    </controller>
`)
	for a := 0; a < 2; a++ {
		fmt.Fprintf(&b, `    <interface type='bridge'>
      <mac address='%s'/>
      <source bridge='br%d'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x0%d' slot='0x00' function='0x0'/>
    </interface>
`, mac("52:54:00", n, a), a, 1+a*6)
	}
	b.WriteString(`    <serial type='pty'>
      <target type='isa-serial' port='0'>
        <model name='isa-serial'/>
      </target>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>
    </channel>
    <input type='tablet' bus='usb'>
      <address type='usb' bus='0' port='1'/>
    </input>
    <input type='mouse' bus='ps2'/>
    <input type='keyboard' bus='ps2'/>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    <video>
      <model type='virtio' heads='1' primary='yes'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0'/>
    </video>
    <memballoon model='virtio'>
      <address type='pci' domain='0x0000' bus='0x06' slot='0x00' function='0x0'/>
    </memballoon>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
      <address type='pci' domain='0x0000' bus='0x07' slot='0x00' function='0x0'/>
    </rng>
`)
	const tail = "  </devices>\n</domain>\n"
	for port := 1; b.Len()+len(tail) < size; port++ {
		fmt.Fprintf(&b, `    <controller type='pci' index='%d' model='pcie-root-port'>
      <model name='pcie-root-port'/>
      <target chassis='%d' port='0x%x'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x%02x' function='0x%x'%s/>
    </controller>
`, port, port, 0x10+port-1, 2+(port-1)/8, (port-1)%8, map[bool]string{true: " multifunction='on'"}[(port-1)%8 == 0])
	}
	b.WriteString(tail)
	return []byte(b.String())
}

// VSphereDefinition is the vSphere driver's stored definition of vm (its
// JSON: name, memory, CPUs, guest, datastore, disk controllers, disks and
// adapters), with as many disks as bring it to about size bytes.
func VSphereDefinition(vm cluster.VM, size int) []byte {
	n, _ := strconv.Atoi(strings.TrimPrefix(vm.Name, "vm-"))
	ds := fmt.Sprintf("[vsanDatastore-%02d]", n%7)
	var b strings.Builder
	fmt.Fprintf(&b, `{"name":%q,"memoryMB":%d,"numCPU":%d,"guestId":"rhel9_64Guest","datastore":"%s %s/%s.vmx",`,
		vm.Name, vm.MemoryBytes>>20, vm.VCPUs, ds, vm.Name, vm.Name)
	b.WriteString(`"controllers":[{"type":"ParaVirtualSCSIController","bus":0},{"type":"ParaVirtualSCSIController","bus":1},{"type":"VirtualAHCIController","bus":0}],`)
	fmt.Fprintf(&b, `"nics":[{"type":"VirtualVmxnet3","mac":"%s","switchUuid":"50 2a 8e 6c 1b 33 4c 5d-9f 0e 7a 61 28 4d 93 c2","portgroupKey":"dvportgroup-%d"},`+
		`{"type":"VirtualVmxnet3","mac":"%s","network":"VM Network"}],"disks":[`, mac("00:50:56", n, 0), 1000+n%40, mac("00:50:56", n, 1))
	for d := 0; ; d++ {
		if d > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"file":"%s %s/%s_%d.vmdk","capacityKB":%d,"controller":%d,"unit":%d}`, ds, vm.Name, vm.Name, d, int64(16+d*8)<<20, d%2, d/2)
		if b.Len()+2 >= size || d == 59 {
			break
		}
	}
	b.WriteString("]}")
	return []byte(b.String())
}
