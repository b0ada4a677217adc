package vsphere

import (
	"context"
	"fmt"
	"reflect"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// The devices a recreated VM gets back. A VM recreated after its host was
// fenced is a new VM object: without its disks it would boot nothing, and
// without its MAC addresses a guest that binds its network configuration
// to them would come up unreachable. So the definition records the VM's
// disk controllers, the files of its disks (they stay on the datastore:
// Destroy only unregisters), and its network adapters with their MACs.

// deviceSet is what a definition records of a VM's devices.
type deviceSet struct {
	Controllers []controllerDef `json:"controllers,omitempty"`
	Disks       []diskDef       `json:"disks,omitempty"`
	NICs        []nicDef        `json:"nics,omitempty"`
	// Unrecoverable lists the devices Recreate could not bring back: it
	// refuses such a VM rather than recreate it without them.
	Unrecoverable []string `json:"unrecoverable,omitempty"`
}

// controllerDef is one disk controller.
type controllerDef struct {
	Type string `json:"type"` // the vSphere type: VirtualLsiLogicController, ParaVirtualSCSIController, VirtualIDEController…
	Bus  int32  `json:"bus"`
}

// diskDef is one virtual disk, attached again from its file.
type diskDef struct {
	File       string `json:"file"` // "[datastore] dir/name.vmdk"
	CapacityKB int64  `json:"capacityKB"`
	Controller int    `json:"controller"` // index into definition.Controllers
	Unit       int32  `json:"unit"`
}

// nicDef is one network adapter.
type nicDef struct {
	Type string `json:"type"` // VirtualVmxnet3, VirtualE1000e…
	MAC  string `json:"mac,omitempty"`
	// One of: a standard port group by name, a distributed port group, or
	// an opaque (NSX) network.
	Network      string `json:"network,omitempty"`
	SwitchUUID   string `json:"switchUuid,omitempty"`
	PortgroupKey string `json:"portgroupKey,omitempty"`
	OpaqueID     string `json:"opaqueId,omitempty"`
	OpaqueType   string `json:"opaqueType,omitempty"`
}

// diskControllerTypes are the controllers a disk can hang off, by vSphere
// type name. IDE controllers are not created: every VM has two.
var diskControllerTypes = func() map[string]types.BaseVirtualDevice {
	m := map[string]types.BaseVirtualDevice{}
	for _, d := range append(object.SCSIControllerTypes(),
		&types.VirtualNVMEController{}, &types.VirtualAHCIController{}, &types.VirtualIDEController{}) {
		m[reflect.TypeOf(d).Elem().Name()] = d
	}
	return m
}()

// ideControllerKey is the key of a VM's built-in IDE controller bus.
func ideControllerKey(bus int32) int32 { return 200 + bus }

// describeDevices records a VM's disks and adapters. What it cannot bring
// back (a raw device mapping, a disk on an unknown controller, an adapter
// on an unknown kind of network) goes to Unrecoverable, so that Recreate
// refuses rather than build a VM that is missing a part.
func describeDevices(devices object.VirtualDeviceList) (def deviceSet) {
	ctrlIndex := map[int32]int{} // controller key → index in def.Controllers
	for _, dev := range devices {
		switch d := dev.(type) {
		case *types.VirtualDisk:
			desc := devices.Name(dev)
			flat, ok := d.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
			if !ok || flat.FileName == "" {
				def.Unrecoverable = append(def.Unrecoverable, fmt.Sprintf("%s has a %T backing", desc, d.Backing))
				continue
			}
			ctrl := devices.FindByKey(d.ControllerKey)
			if ctrl == nil || d.UnitNumber == nil {
				def.Unrecoverable = append(def.Unrecoverable, desc+" is on no known controller")
				continue
			}
			typ := reflect.TypeOf(ctrl).Elem().Name()
			if _, known := diskControllerTypes[typ]; !known {
				def.Unrecoverable = append(def.Unrecoverable, fmt.Sprintf("%s is on a %s", desc, typ))
				continue
			}
			i, seen := ctrlIndex[d.ControllerKey]
			if !seen {
				i = len(def.Controllers)
				ctrlIndex[d.ControllerKey] = i
				def.Controllers = append(def.Controllers, controllerDef{Type: typ, Bus: ctrl.(types.BaseVirtualController).GetVirtualController().BusNumber})
			}
			def.Disks = append(def.Disks, diskDef{File: flat.FileName, CapacityKB: d.CapacityInKB, Controller: i, Unit: *d.UnitNumber})
		case types.BaseVirtualEthernetCard:
			card := d.GetVirtualEthernetCard()
			nic := nicDef{Type: reflect.TypeOf(dev).Elem().Name(), MAC: card.MacAddress}
			switch b := card.Backing.(type) {
			case *types.VirtualEthernetCardNetworkBackingInfo:
				nic.Network = b.DeviceName
			case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
				nic.SwitchUUID, nic.PortgroupKey = b.Port.SwitchUuid, b.Port.PortgroupKey
			case *types.VirtualEthernetCardOpaqueNetworkBackingInfo:
				nic.OpaqueID, nic.OpaqueType = b.OpaqueNetworkId, b.OpaqueNetworkType
			default:
				def.Unrecoverable = append(def.Unrecoverable, fmt.Sprintf("%s has a %T backing", devices.Name(dev), card.Backing))
				continue
			}
			def.NICs = append(def.NICs, nic)
		}
	}
	return def
}

// deviceChanges builds the devices of a recreated VM from def: its
// controllers, its disks attached from their files (no file operation: the
// files exist and are kept), and its adapters with their MAC addresses.
func deviceChanges(def deviceSet) ([]types.BaseVirtualDeviceConfigSpec, error) {
	var added object.VirtualDeviceList
	var changes []types.BaseVirtualDeviceConfigSpec
	add := func(dev types.BaseVirtualDevice) {
		added = append(added, dev)
		changes = append(changes, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: dev})
	}
	ctrlKeys := make([]int32, len(def.Controllers))
	for i, c := range def.Controllers {
		proto, ok := diskControllerTypes[c.Type]
		if !ok {
			return nil, fmt.Errorf("disk controller %d: unknown type %q", i, c.Type)
		}
		if c.Type == "VirtualIDEController" {
			if c.Bus < 0 || c.Bus > 1 {
				return nil, fmt.Errorf("disk controller %d: IDE bus %d", i, c.Bus)
			}
			ctrlKeys[i] = ideControllerKey(c.Bus)
			continue
		}
		dev := reflect.New(reflect.TypeOf(proto).Elem()).Interface().(types.BaseVirtualDevice)
		vc := dev.(types.BaseVirtualController).GetVirtualController()
		vc.Key, vc.BusNumber = added.NewKey(), c.Bus
		if scsi, ok := dev.(types.BaseVirtualSCSIController); ok {
			s := scsi.GetVirtualSCSIController()
			s.SharedBus, s.ScsiCtlrUnitNumber = types.VirtualSCSISharingNoSharing, 7
		}
		ctrlKeys[i] = vc.Key
		add(dev)
	}
	for _, d := range def.Disks {
		if d.Controller < 0 || d.Controller >= len(ctrlKeys) {
			return nil, fmt.Errorf("disk %s: controller %d of %d", d.File, d.Controller, len(ctrlKeys))
		}
		unit := d.Unit
		add(&types.VirtualDisk{
			VirtualDevice: types.VirtualDevice{
				Key:           added.NewKey(),
				ControllerKey: ctrlKeys[d.Controller],
				UnitNumber:    &unit,
				Backing: &types.VirtualDiskFlatVer2BackingInfo{
					VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: d.File},
					DiskMode:                     string(types.VirtualDiskModePersistent),
				},
			},
			CapacityInKB: d.CapacityKB,
		})
	}
	for _, n := range def.NICs {
		var backing types.BaseVirtualDeviceBackingInfo
		switch {
		case n.Network != "":
			backing = &types.VirtualEthernetCardNetworkBackingInfo{VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: n.Network}}
		case n.PortgroupKey != "":
			backing = &types.VirtualEthernetCardDistributedVirtualPortBackingInfo{Port: types.DistributedVirtualSwitchPortConnection{SwitchUuid: n.SwitchUUID, PortgroupKey: n.PortgroupKey}}
		case n.OpaqueID != "":
			backing = &types.VirtualEthernetCardOpaqueNetworkBackingInfo{OpaqueNetworkId: n.OpaqueID, OpaqueNetworkType: n.OpaqueType}
		default:
			return nil, fmt.Errorf("network adapter %s: no network", n.MAC)
		}
		var dev types.BaseVirtualDevice
		for _, proto := range object.EthernetCardTypes() {
			if reflect.TypeOf(proto).Elem().Name() == n.Type {
				dev = proto
			}
		}
		if dev == nil {
			return nil, fmt.Errorf("network adapter %s: unknown type %q", n.MAC, n.Type)
		}
		card := dev.(types.BaseVirtualEthernetCard).GetVirtualEthernetCard()
		card.Key, card.Backing = added.NewKey(), backing
		if n.MAC != "" {
			card.MacAddress, card.AddressType = n.MAC, string(types.VirtualEthernetCardMacTypeManual)
		}
		add(dev)
	}
	return changes, nil
}

// cachedDevices are a VM's devices as of one config.changeVersion.
type cachedDevices struct {
	version string
	set     deviceSet
}

// deviceBatch bounds one retrieval of device lists.
const deviceBatch = 250

// vmDevices returns the devices of vms. Device lists are the bulk of a VM's
// configuration (about three times the rest of an inventory together), so
// they are read only for VMs whose config.changeVersion moved since the
// last inventory — vCenter changes it with every reconfiguration — or that
// have none.
func (d *Driver) vmDevices(ctx context.Context, vms []decodedVM) (map[types.ManagedObjectReference]deviceSet, error) {
	out := make(map[types.ManagedObjectReference]deviceSet, len(vms))
	versions := make(map[types.ManagedObjectReference]string)
	var stale []types.ManagedObjectReference
	d.mu.Lock()
	for _, vm := range vms {
		if c, ok := d.devices[vm.ref]; ok && vm.changeVersion != "" && c.version == vm.changeVersion {
			out[vm.ref] = c.set
			continue
		}
		stale = append(stale, vm.ref)
		versions[vm.ref] = vm.changeVersion
	}
	d.mu.Unlock()

	fresh := make(map[types.ManagedObjectReference]cachedDevices, len(stale))
	for start := 0; start < len(stale); start += deviceBatch {
		batch := stale[start:min(start+deviceBatch, len(stale))]
		found, err := d.retrieveDevices(ctx, batch)
		if err != nil {
			return nil, err
		}
		for _, m := range found {
			if m.Config == nil {
				continue
			}
			set := describeDevices(object.VirtualDeviceList(m.Config.Hardware.Device))
			out[m.Self] = set
			fresh[m.Self] = cachedDevices{version: versions[m.Self], set: set}
		}
	}

	d.mu.Lock()
	next := make(map[types.ManagedObjectReference]cachedDevices, len(vms))
	for _, vm := range vms {
		if c, ok := fresh[vm.ref]; ok {
			next[vm.ref] = c
		} else if c, ok := d.devices[vm.ref]; ok {
			next[vm.ref] = c
		}
	}
	d.devices = next
	d.mu.Unlock()
	return out, nil
}

// retrieveDevices reads the device lists of refs in one call. A VM deleted
// since the inventory's retrieval fails the call; then each is read on its
// own and the deleted ones are left out.
func (d *Driver) retrieveDevices(ctx context.Context, refs []types.ManagedObjectReference) ([]mo.VirtualMachine, error) {
	pc := property.DefaultCollector(d.client.Client)
	props := []string{"config.hardware.device"}
	var found []mo.VirtualMachine
	err := pc.Retrieve(ctx, refs, props, &found)
	if err == nil || !fault.Is(err, &types.ManagedObjectNotFound{}) {
		if err != nil {
			return nil, fmt.Errorf("devices of %d VMs: %w", len(refs), classify(err))
		}
		return found, nil
	}
	found = found[:0]
	for _, ref := range refs {
		var m mo.VirtualMachine
		if err := pc.RetrieveOne(ctx, ref, props, &m); err != nil {
			if fault.Is(err, &types.ManagedObjectNotFound{}) {
				continue
			}
			return nil, fmt.Errorf("devices of VM %s: %w", ref.Value, classify(err))
		}
		found = append(found, m)
	}
	return found, nil
}
