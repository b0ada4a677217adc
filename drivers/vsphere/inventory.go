package vsphere

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/herd-project/herd/drivers"
)

// Properties retrieved by Inventory, per managed object type.
var (
	hostProps = []string{
		"name", "parent",
		"summary.hardware.memorySize", "summary.hardware.numCpuThreads",
		"summary.hardware.numCpuCores", "summary.hardware.cpuMhz",
		"runtime.connectionState", "runtime.inMaintenanceMode", "config.autoStart",
	}
	vmProps = []string{
		"name", "config.instanceUuid", "config.uuid", "config.template",
		"config.hardware.memoryMB", "config.hardware.numCPU",
		"config.guestId", "config.files.vmPathName", "config.changeVersion",
		"runtime.powerState", "runtime.host", "runtime.connectionState",
	}
	computeProps = []string{"name", "resourcePool"}
	viewTypes    = []string{"HostSystem", "VirtualMachine", "ComputeResource"}
)

// definition is the VM Definition Recreate needs, stored as JSON.
type definition struct {
	Name string `json:"name"`
	// UUID (config.uuid, the SMBIOS UUID the guest sees) and InstanceUUID
	// (config.instanceUuid, vCenter's and Herd's id) are set on the
	// recreated VM: it is the same machine.
	UUID         string `json:"uuid,omitempty"`
	InstanceUUID string `json:"instanceUuid,omitempty"`
	MemoryMB     int64  `json:"memoryMB"`
	NumCPU       int32  `json:"numCPU"`
	GuestID      string `json:"guestId,omitempty"`
	Datastore    string `json:"datastore,omitempty"`
	deviceSet
}

// decodedVM is a VM as the inventory's retrieval describes it, before its
// devices are added to its definition.
type decodedVM struct {
	drivers.VM
	ref           types.ManagedObjectReference
	def           definition
	changeVersion string
}

// Inventory lists the datacenter's hosts and VMs (templates excluded) with
// one property-collector retrieval over a container view. VM placement
// comes from each VM's runtime.host only.
func (d *Driver) Inventory(ctx context.Context) (*drivers.Inventory, error) {
	content, err := d.retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}

	type computeResource struct {
		name string
		pool types.ManagedObjectReference
	}
	computes := make(map[types.ManagedObjectReference]computeResource)
	for _, oc := range content {
		if oc.Obj.Type == "ComputeResource" || oc.Obj.Type == "ClusterComputeResource" {
			var cr computeResource
			for _, p := range oc.PropSet {
				switch p.Name {
				case "name":
					cr.name, _ = p.Val.(string)
				case "resourcePool":
					cr.pool, _ = p.Val.(types.ManagedObjectReference)
				}
			}
			computes[oc.Obj] = cr
		}
	}

	inv := &drivers.Inventory{}
	hosts := make(map[string]hostInfo)
	hostNames := make(map[types.ManagedObjectReference]string)
	autostart := make(map[types.ManagedObjectReference]bool)
	for _, oc := range content {
		if oc.Obj.Type != "HostSystem" {
			continue
		}
		h, parent := decodeHost(oc.PropSet, autostart)
		cr := computes[parent]
		h.Group = cr.name
		inv.Hosts = append(inv.Hosts, h)
		hosts[h.Name] = hostInfo{ref: oc.Obj, pool: cr.pool, group: cr.name}
		hostNames[oc.Obj] = h.Name
	}

	vms := make(map[string]types.ManagedObjectReference)
	var decoded []decodedVM
	for _, oc := range content {
		if oc.Obj.Type != "VirtualMachine" {
			continue
		}
		vm, ok := decodeVM(oc.PropSet, hostNames)
		if !ok {
			continue
		}
		vm.ref = oc.Obj
		vm.Autostart = autostart[oc.Obj]
		decoded = append(decoded, vm)
		vms[vm.ID] = oc.Obj
	}
	devices, err := d.vmDevices(ctx, decoded)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	for _, vm := range decoded {
		def := vm.def
		def.deviceSet = devices[vm.ref]
		vm.Definition, _ = json.Marshal(def) // strings, numbers and lists of them
		inv.VMs = append(inv.VMs, vm.VM)
	}
	sort.Slice(inv.Hosts, func(i, j int) bool { return inv.Hosts[i].Name < inv.Hosts[j].Name })
	sort.Slice(inv.VMs, func(i, j int) bool { return inv.VMs[i].Name < inv.VMs[j].Name })

	d.mu.Lock()
	d.hosts, d.vms = hosts, vms
	d.mu.Unlock()
	return inv, nil
}

// retrieve runs the one retrieval behind Inventory, creating the container
// view when there is none or when vCenter has dropped it.
func (d *Driver) retrieve(ctx context.Context) ([]types.ObjectContent, error) {
	for attempt := 0; ; attempt++ {
		v, err := d.containerView(ctx)
		if err != nil {
			return nil, err
		}
		var content []types.ObjectContent
		err = v.Retrieve(ctx, []string{"HostSystem"}, hostProps, &content,
			types.PropertySpec{Type: "VirtualMachine", PathSet: vmProps},
			types.PropertySpec{Type: "ComputeResource", PathSet: computeProps})
		if err == nil {
			return content, nil
		}
		if attempt == 0 && fault.Is(err, &types.ManagedObjectNotFound{}) {
			d.log.Warn("container view gone, creating it again", "err", err)
			d.mu.Lock()
			if d.view == v {
				d.view = nil
			}
			d.mu.Unlock()
			continue
		}
		return nil, fmt.Errorf("retrieve properties: %w", classify(err))
	}
}

// containerView returns the session's view of the datacenter's hosts, VMs
// and compute resources, creating it on first use.
func (d *Driver) containerView(ctx context.Context) (*view.ContainerView, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.view != nil {
		return d.view, nil
	}
	v, err := view.NewManager(d.client.Client).CreateContainerView(ctx, d.dc.Reference(), viewTypes, true)
	if err != nil {
		return nil, fmt.Errorf("create container view: %w", classify(err))
	}
	d.view = v
	return v, nil
}

// decodeHost reads a HostSystem's properties; it also returns its parent,
// and adds the VMs its automatic startup powers on to autostart.
func decodeHost(props []types.DynamicProperty, autostart map[types.ManagedObjectReference]bool) (drivers.Host, types.ManagedObjectReference) {
	var h drivers.Host
	var parent types.ManagedObjectReference
	var mhz, cores int64
	for _, p := range props {
		switch p.Name {
		case "config.autoStart":
			if cfg, ok := p.Val.(types.HostAutoStartManagerConfig); ok {
				for ref := range autoStarted(cfg) {
					autostart[ref] = true
				}
			}
		case "name":
			h.Name, _ = p.Val.(string)
		case "parent":
			parent, _ = p.Val.(types.ManagedObjectReference)
		case "summary.hardware.memorySize":
			h.MemoryBytes = toInt64(p.Val)
		case "summary.hardware.numCpuThreads":
			h.CPUs = int(toInt64(p.Val))
		case "summary.hardware.numCpuCores":
			cores = toInt64(p.Val)
		case "summary.hardware.cpuMhz":
			mhz = toInt64(p.Val)
		case "runtime.connectionState":
			h.Connection = connection(p.Val)
		case "runtime.inMaintenanceMode":
			h.InMaintenance, _ = p.Val.(bool)
		}
	}
	h.CPUMHz = mhz * cores
	return h, parent
}

// decodeVM reads a VirtualMachine's properties; ok is false for templates
// and VMs without a UUID (being created, or inaccessible).
func decodeVM(props []types.DynamicProperty, hostNames map[types.ManagedObjectReference]string) (vm decodedVM, ok bool) {
	def := &vm.def
	var biosUUID, vmPath string
	var template bool
	connected := string(types.VirtualMachineConnectionStateConnected)
	for _, p := range props {
		switch p.Name {
		case "name":
			vm.Name, _ = p.Val.(string)
		case "config.instanceUuid":
			vm.ID, _ = p.Val.(string)
		case "config.uuid":
			biosUUID, _ = p.Val.(string)
		case "config.template":
			template, _ = p.Val.(bool)
		case "config.hardware.memoryMB":
			def.MemoryMB = toInt64(p.Val)
		case "config.hardware.numCPU":
			def.NumCPU = int32(toInt64(p.Val))
		case "config.guestId":
			def.GuestID, _ = p.Val.(string)
		case "config.files.vmPathName":
			vmPath, _ = p.Val.(string)
		case "config.changeVersion":
			vm.changeVersion, _ = p.Val.(string)
		case "runtime.powerState":
			vm.Power = powerState(p.Val)
		case "runtime.host":
			ref, _ := p.Val.(types.ManagedObjectReference)
			vm.Host = hostNames[ref]
		case "runtime.connectionState":
			connected = fmt.Sprint(p.Val)
		}
	}
	if vm.ID == "" {
		vm.ID = biosUUID
	}
	if template || vm.ID == "" {
		return vm, false
	}
	vm.MemoryBytes = def.MemoryMB << 20
	vm.VCPUs = int(def.NumCPU)
	if connected != string(types.VirtualMachineConnectionStateConnected) {
		vm.Unmovable = "VM is " + connected
	}
	var dp object.DatastorePath
	if dp.FromString(vmPath) {
		def.Datastore = dp.Datastore
	}
	def.Name = vm.Name
	def.UUID, def.InstanceUUID = biosUUID, vm.ID
	return vm, true
}

// autoStarted are the VMs a host's automatic startup powers on: those in
// its list whose start action is powerOn, or the system default while the
// host's automatic startup is enabled.
func autoStarted(cfg types.HostAutoStartManagerConfig) map[types.ManagedObjectReference]bool {
	out := map[types.ManagedObjectReference]bool{}
	enabled := cfg.Defaults != nil && cfg.Defaults.Enabled != nil && *cfg.Defaults.Enabled
	for _, p := range cfg.PowerInfo {
		if strings.EqualFold(p.StartAction, "powerOn") || (enabled && strings.EqualFold(p.StartAction, "systemDefault")) {
			out[p.Key] = true
		}
	}
	return out
}

func toInt64(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case int32:
		return int64(n)
	case int16:
		return int64(n)
	case int8:
		return int64(n)
	case int:
		return int64(n)
	}
	return 0
}

func connection(v any) drivers.Connection {
	switch fmt.Sprint(v) {
	case string(types.HostSystemConnectionStateConnected):
		return drivers.Connected
	case string(types.HostSystemConnectionStateNotResponding):
		return drivers.NotResponding
	}
	return drivers.Disconnected
}

func powerState(v any) drivers.PowerState {
	switch fmt.Sprint(v) {
	case string(types.VirtualMachinePowerStatePoweredOn):
		return drivers.PoweredOn
	case string(types.VirtualMachinePowerStateSuspended):
		return drivers.Suspended
	}
	return drivers.PoweredOff
}
