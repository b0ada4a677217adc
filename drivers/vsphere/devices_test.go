package vsphere

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/herd-project/herd/drivers"
)

// devicesOf reads a VM's devices from vCenter.
func devicesOf(t *testing.T, d *Driver, id string) object.VirtualDeviceList {
	t.Helper()
	ctx := testContext(t)
	ref, err := d.vmRef(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var vm mo.VirtualMachine
	if err := property.DefaultCollector(d.client.Client).RetrieveOne(ctx, ref, []string{"config.hardware.device"}, &vm); err != nil {
		t.Fatal(err)
	}
	return object.VirtualDeviceList(vm.Config.Hardware.Device)
}

// diskFiles lists the files of a VM's disks.
func diskFiles(l object.VirtualDeviceList) []string {
	var files []string
	for _, dev := range l.SelectByType((*types.VirtualDisk)(nil)) {
		if b, ok := dev.(*types.VirtualDisk).Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
			files = append(files, b.GetVirtualDeviceFileBackingInfo().FileName)
		}
	}
	return files
}

// adapters lists a VM's network adapters as "type mac network".
func adapters(l object.VirtualDeviceList) []string {
	var out []string
	for _, dev := range l.SelectByType((*types.VirtualEthernetCard)(nil)) {
		card := dev.(types.BaseVirtualEthernetCard).GetVirtualEthernetCard()
		network := ""
		if b, ok := card.Backing.(*types.VirtualEthernetCardNetworkBackingInfo); ok {
			network = b.DeviceName
		}
		out = append(out, l.Name(dev)[:len("ethernet")]+" "+card.MacAddress+" "+network)
	}
	return out
}

// TestRecreateKeepsDisksAndAdapters: a VM recreated after its host was
// fenced gets the original's disks (the same files: its data) on the same
// kind of controller, and its adapters on the same network with the same
// MAC addresses. A definition whose disk file is gone, or that lists a
// device Herd cannot bring back, recreates nothing.
func TestRecreateKeepsDisksAndAdapters(t *testing.T) {
	t.Parallel()
	sim, d := newTestDriver(t, SimConfig{Hosts: 3, VMs: 4})
	target := sim.HostNames()[2]
	orig := mustVM(t, d, "vm-002")
	before := devicesOf(t, d, orig.ID)
	if len(diskFiles(before)) != 1 || len(adapters(before)) != 1 {
		t.Fatalf("simulated VM has disks %v and adapters %v, want one of each", diskFiles(before), adapters(before))
	}
	var def definition
	if err := json.Unmarshal(orig.Definition, &def); err != nil {
		t.Fatal(err)
	}
	if len(def.Disks) != 1 || len(def.NICs) != 1 || len(def.Controllers) != 1 || def.Controllers[0].Type != "ParaVirtualSCSIController" {
		t.Fatalf("definition %s does not describe the disk, its controller and the adapter", orig.Definition)
	}

	fenceSimHost(t, sim, orig.Host)
	id, err := d.Recreate(testContext(t), orig.Definition, target)
	if err != nil {
		t.Fatalf("Recreate: %v", err)
	}
	after := devicesOf(t, d, id)
	if got, want := strings.Join(diskFiles(after), ","), strings.Join(diskFiles(before), ","); got != want {
		t.Errorf("recreated VM's disks are %q, want the original's %q", got, want)
	}
	if got, want := strings.Join(adapters(after), ","), strings.Join(adapters(before), ","); got != want {
		t.Errorf("recreated VM's adapters are %q, want the original's %q", got, want)
	}
	if n := len(after.SelectByType((*types.ParaVirtualSCSIController)(nil))); n != 1 {
		t.Errorf("recreated VM has %d paravirtual SCSI controllers, want 1", n)
	}

	// The disk's file is gone: nothing is created.
	missing := def
	missing.Name, missing.UUID, missing.InstanceUUID = "vm-missing", "", ""
	missing.Disks = []diskDef{{File: "[" + def.Datastore + "] gone/gone.vmdk", CapacityKB: 1 << 20}}
	b, _ := json.Marshal(missing)
	if _, err := d.Recreate(testContext(t), b, target); err == nil {
		t.Error("Recreate with a missing disk file succeeded")
	}
	if vm, ok := vmNamed(t, d, "vm-missing"); ok {
		t.Errorf("a failed Recreate left VM %+v behind", vm)
	}

	// A device that cannot be brought back: refused, and says which.
	partial := def
	partial.Unrecoverable = []string{"disk-1000-1 has a *types.VirtualDiskRawDiskMappingVer1BackingInfo backing"}
	b, _ = json.Marshal(partial)
	if _, err := d.Recreate(testContext(t), b, target); !errors.Is(err, drivers.ErrNotSupported) || !strings.Contains(err.Error(), "RawDiskMapping") {
		t.Errorf("Recreate with an unrecoverable device: %v, want ErrNotSupported naming it", err)
	}
}

// TestDescribeDevices: what the definition records of each kind of device.
func TestDescribeDevices(t *testing.T) {
	unit := func(n int32) *int32 { return &n }
	scsi := &types.VirtualLsiLogicController{VirtualSCSIController: types.VirtualSCSIController{VirtualController: types.VirtualController{BusNumber: 1, VirtualDevice: types.VirtualDevice{Key: 1001}}}}
	ide := &types.VirtualIDEController{VirtualController: types.VirtualController{BusNumber: 0, VirtualDevice: types.VirtualDevice{Key: 200}}}
	flat := func(key, ctrl int32, u int32, file string) *types.VirtualDisk {
		return &types.VirtualDisk{CapacityInKB: 1024, VirtualDevice: types.VirtualDevice{Key: key, ControllerKey: ctrl, UnitNumber: unit(u),
			Backing: &types.VirtualDiskFlatVer2BackingInfo{VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: file}}}}
	}
	rdm := &types.VirtualDisk{VirtualDevice: types.VirtualDevice{Key: 2003, ControllerKey: 1001, UnitNumber: unit(2),
		Backing: &types.VirtualDiskRawDiskMappingVer1BackingInfo{VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: "[ds] a/rdm.vmdk"}}}}
	dvs := &types.VirtualE1000e{VirtualEthernetCard: types.VirtualEthernetCard{MacAddress: "00:50:56:01:02:03", VirtualDevice: types.VirtualDevice{Key: 4000,
		Backing: &types.VirtualEthernetCardDistributedVirtualPortBackingInfo{Port: types.DistributedVirtualSwitchPortConnection{SwitchUuid: "sw", PortgroupKey: "dvportgroup-1"}}}}}
	orphan := flat(2004, 999, 0, "[ds] a/orphan.vmdk")

	def := describeDevices(object.VirtualDeviceList{scsi, ide, flat(2000, 1001, 0, "[ds] a/a.vmdk"), flat(2001, 200, 1, "[ds] a/b.vmdk"), flat(2002, 1001, 3, "[ds] a/c.vmdk"), rdm, dvs, orphan})
	wantCtrl := []controllerDef{{"VirtualLsiLogicController", 1}, {"VirtualIDEController", 0}}
	wantDisks := []diskDef{{"[ds] a/a.vmdk", 1024, 0, 0}, {"[ds] a/b.vmdk", 1024, 1, 1}, {"[ds] a/c.vmdk", 1024, 0, 3}}
	if got, _ := json.Marshal(def.Controllers); string(got) != mustJSON(wantCtrl) {
		t.Errorf("controllers %s, want %s", got, mustJSON(wantCtrl))
	}
	if got, _ := json.Marshal(def.Disks); string(got) != mustJSON(wantDisks) {
		t.Errorf("disks %s, want %s", got, mustJSON(wantDisks))
	}
	if len(def.NICs) != 1 || def.NICs[0] != (nicDef{Type: "VirtualE1000e", MAC: "00:50:56:01:02:03", SwitchUUID: "sw", PortgroupKey: "dvportgroup-1"}) {
		t.Errorf("adapters %+v", def.NICs)
	}
	if len(def.Unrecoverable) != 2 || !strings.Contains(def.Unrecoverable[0], "RawDiskMapping") || !strings.Contains(def.Unrecoverable[1], "no known controller") {
		t.Errorf("unrecoverable %q, want the raw device mapping and the disk on no known controller", def.Unrecoverable)
	}

	// And back: the IDE disk goes on the built-in controller, the SCSI
	// ones on one new controller, the adapter keeps its MAC.
	def.Unrecoverable = nil
	changes, err := deviceChanges(def)
	if err != nil {
		t.Fatal(err)
	}
	var added object.VirtualDeviceList
	for _, c := range changes {
		spec := c.GetVirtualDeviceConfigSpec()
		if spec.FileOperation != "" {
			t.Errorf("%s has file operation %q: the files exist and are kept", added.Name(spec.Device), spec.FileOperation)
		}
		added = append(added, spec.Device)
	}
	ctrls := added.SelectByType((*types.VirtualLsiLogicController)(nil))
	if len(ctrls) != 1 {
		t.Fatalf("%d LSI Logic controllers, want 1", len(ctrls))
	}
	key := ctrls[0].GetVirtualDevice().Key
	for _, dev := range added.SelectByType((*types.VirtualDisk)(nil)) {
		disk := dev.(*types.VirtualDisk)
		file := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo).FileName
		wantKey := key
		if file == "[ds] a/b.vmdk" {
			wantKey = 200
		}
		if disk.ControllerKey != wantKey {
			t.Errorf("disk %s on controller %d, want %d", file, disk.ControllerKey, wantKey)
		}
	}
	nic := added.SelectByType((*types.VirtualEthernetCard)(nil))
	if len(nic) != 1 || nic[0].(types.BaseVirtualEthernetCard).GetVirtualEthernetCard().MacAddress != "00:50:56:01:02:03" {
		t.Errorf("adapters %v", nic)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestInventoryDevicesFollowReconfigure: device lists are cached by
// config.changeVersion; a reconfigured VM's definition shows its new
// devices at the next inventory.
func TestInventoryDevicesFollowReconfigure(t *testing.T) {
	t.Parallel()
	_, d := newTestDriver(t, SimConfig{Hosts: 2, VMs: 2})
	nics := func() int {
		var def definition
		if err := json.Unmarshal(mustVM(t, d, "vm-001").Definition, &def); err != nil {
			t.Fatal(err)
		}
		return len(def.NICs)
	}
	if n := nics(); n != 1 {
		t.Fatalf("vm-001 has %d adapters, want 1", n)
	}
	ctx := testContext(t)
	id := mustVM(t, d, "vm-001").ID
	ref, err := d.vmRef(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var l object.VirtualDeviceList
	nic, err := l.CreateEthernetCard("e1000e", &types.VirtualEthernetCardNetworkBackingInfo{VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: "VM Network"}})
	if err != nil {
		t.Fatal(err)
	}
	vm := object.NewVirtualMachine(d.client.Client, ref)
	if err := vm.AddDevice(ctx, nic); err != nil {
		t.Fatalf("add an adapter: %v", err)
	}
	if n := nics(); n != 2 {
		t.Errorf("after adding an adapter the definition lists %d, want 2", n)
	}
	if n := nics(); n != 2 {
		t.Errorf("from the cache the definition lists %d adapters, want 2", n)
	}
}
