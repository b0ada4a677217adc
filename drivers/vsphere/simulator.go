package vsphere

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"sync"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/herd-project/herd/drivers"
)

// SimConfig sizes a simulated vCenter.
type SimConfig struct {
	// Hosts is the number of hosts in the single cluster.
	Hosts int
	// VMs is the number of VMs, spread round-robin over the hosts.
	VMs int
	// MethodDelay slows SOAP methods by name (e.g. "RelocateVM_Task"), in
	// milliseconds, so that migrations take time as they do on real hosts.
	MethodDelay map[string]int
	// HostMemoryGiB sizes every host (256 when zero).
	HostMemoryGiB int
}

// Simulated hardware of every host, large enough for its share of VMs.
const (
	simUser        = "herd"
	simPassword    = "herd-sim"
	simHostMemory  = int64(256) << 30
	simHostCores   = 32
	simHostThreads = 64
	simHostMHz     = 2600
	// simWorkers create VMs in parallel: the simulator spends most of a
	// creation waiting on locks and files, not on CPU.
	simWorkers = 16
)

// modelCreateMu serialises simulator.Model.Create: it appends to a package
// global (simulator.EvalLicense) without a lock.
var modelCreateMu sync.Mutex

// Simulator is an in-process vCenter (govmomi's vcsim) with one datacenter,
// one cluster and a set of VMs, served over SOAP on 127.0.0.1. It is for
// development and tests; several can run in one process.
type Simulator struct {
	model  *simulator.Model
	server *simulator.Server
	hosts  map[string]*simulator.HostSystem
	names  []string

	closeOnce sync.Once
}

// StartSimulator builds the inventory cfg describes and starts serving it.
// VMs are named vm-001, vm-002…; their memory cycles through 1, 2, 4, 8 and
// 16 GiB, their vCPUs through 1 to 8, and one in eight is powered off.
func StartSimulator(cfg SimConfig) (*Simulator, error) {
	if cfg.Hosts < 1 || cfg.VMs < 0 {
		return nil, fmt.Errorf("start simulator: need at least one host and no negative VM count, got %d hosts, %d VMs", cfg.Hosts, cfg.VMs)
	}
	m := simulator.VPX()
	m.Datacenter = 1
	m.Cluster = 1
	m.ClusterHost = cfg.Hosts
	m.Host = 0
	m.Machine = 0
	m.Portgroup = 0
	m.Datastore = 1
	m.Autostart = false
	modelCreateMu.Lock()
	err := m.Create()
	modelCreateMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("start simulator: create model: %w", err)
	}
	s := &Simulator{model: m, hosts: make(map[string]*simulator.HostSystem)}
	started := false
	defer func() {
		if !started {
			s.Close()
		}
	}()

	s.sizeHosts(cfg.HostMemoryGiB)
	s.addAutoStartManagers()
	if err := s.createVMs(cfg); err != nil {
		return nil, fmt.Errorf("start simulator: %w", err)
	}

	// Delays apply from now on, not to building the inventory.
	m.DelayConfig.MethodDelay = cfg.MethodDelay
	m.Service.TLS = new(tls.Config)
	m.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword(simUser, simPassword)}
	s.server = m.Service.NewServer()
	started = true
	return s, nil
}

// simContext is a fresh simulator context for in-process changes, so that
// locks taken on its behalf never mix with a request's.
func (s *Simulator) simContext() *simulator.Context {
	return &simulator.Context{
		Context: context.Background(),
		Map:     s.model.Map(),
		Session: s.model.Service.Context.Session,
	}
}

// sizeHosts gives every host memGiB (simHostMemory when zero) and
// simHostThreads; the simulator's default host has 4 GiB and 2 CPUs.
func (s *Simulator) sizeHosts(memGiB int) {
	mem := simHostMemory
	if memGiB > 0 {
		mem = int64(memGiB) << 30
	}
	ctx := s.simContext()
	for _, e := range s.model.Map().All("HostSystem") {
		h := e.(*simulator.HostSystem)
		ctx.WithLock(h, func() {
			h.Summary.Hardware.MemorySize = mem
			h.Summary.Hardware.NumCpuCores = simHostCores
			h.Summary.Hardware.NumCpuThreads = simHostThreads
			h.Summary.Hardware.CpuMhz = simHostMHz
			h.Hardware.MemorySize = mem
			h.Hardware.CpuInfo.NumCpuCores = simHostCores
			h.Hardware.CpuInfo.NumCpuThreads = simHostThreads
			s.hosts[h.Name] = h
			s.names = append(s.names, h.Name)
		})
	}
	sort.Strings(s.names)
}

// createVMs creates cfg.VMs VMs through an in-process client (no HTTP).
func (s *Simulator) createVMs(cfg SimConfig) error {
	ctx := context.Background()
	c, err := vim25.NewClient(ctx, s.model.Service)
	if err != nil {
		return fmt.Errorf("in-process client: %w", err)
	}
	dc := object.NewDatacenter(c, s.model.Map().Any("Datacenter").Reference())
	folders, err := dc.Folders(ctx)
	if err != nil {
		return fmt.Errorf("datacenter folders: %w", err)
	}
	cluster := object.NewClusterComputeResource(c, s.model.Map().Any("ClusterComputeResource").Reference())
	pool, err := cluster.ResourcePool(ctx)
	if err != nil {
		return fmt.Errorf("cluster resource pool: %w", err)
	}
	ds := s.model.Map().Any("Datastore").(*simulator.Datastore)

	jobs := make(chan int)
	errs := make(chan error, simWorkers)
	var wg sync.WaitGroup
	for range simWorkers {
		wg.Go(func() {
			for i := range jobs {
				host := object.NewHostSystem(c, s.hosts[s.names[i%len(s.names)]].Reference())
				if err := s.createSimVM(ctx, folders.VmFolder, pool, host, ds.Name, i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var first error
loop:
	for i := range cfg.VMs {
		select {
		case jobs <- i:
		case first = <-errs:
			break loop
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		first = errors.Join(first, err)
	}
	return first
}

// createSimVM creates VM number i on host, powered on unless i%8 == 7.
func (s *Simulator) createSimVM(ctx context.Context, folder *object.Folder, pool *object.ResourcePool, host *object.HostSystem, datastore string, i int) error {
	name := fmt.Sprintf("vm-%03d", i+1)
	spec := types.VirtualMachineConfigSpec{
		Name:     name,
		GuestId:  string(types.VirtualMachineGuestOsIdentifierOtherLinux64Guest),
		MemoryMB: int64(1024) << (i % 5),
		NumCPUs:  int32(1 + i%8),
		Files:    &types.VirtualMachineFileInfo{VmPathName: "[" + datastore + "]"},
		// A disk and an adapter, as a real VM has: recovery must bring
		// both back.
		DeviceChange: simDevices(datastore, name),
	}
	task, err := folder.CreateVM(ctx, spec, pool, host)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	res, err := s.waitTask(task.Reference())
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	if i%8 == 7 {
		return nil
	}
	vm := object.NewVirtualMachine(folder.Client(), res.(types.ManagedObjectReference))
	if task, err = vm.PowerOn(ctx); err == nil {
		_, err = s.waitTask(task.Reference())
	}
	if err != nil {
		return fmt.Errorf("power on %s: %w", name, err)
	}
	return nil
}

// simDevices are a simulated VM's devices: a paravirtual SCSI controller
// with a 16 GiB disk (thin: the simulator writes only its descriptor) and
// a vmxnet3 adapter on the model's "VM Network".
func simDevices(datastore, name string) []types.BaseVirtualDeviceConfigSpec {
	unit := int32(0)
	ctrl := &types.ParaVirtualSCSIController{VirtualSCSIController: types.VirtualSCSIController{
		VirtualController: types.VirtualController{VirtualDevice: types.VirtualDevice{Key: -100}},
		SharedBus:         types.VirtualSCSISharingNoSharing, ScsiCtlrUnitNumber: 7,
	}}
	disk := &types.VirtualDisk{
		VirtualDevice: types.VirtualDevice{
			Key: -101, ControllerKey: -100, UnitNumber: &unit,
			Backing: &types.VirtualDiskFlatVer2BackingInfo{
				VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: fmt.Sprintf("[%s] %s/%s.vmdk", datastore, name, name)},
				DiskMode:                     string(types.VirtualDiskModePersistent),
				ThinProvisioned:              types.NewBool(true),
			},
		},
		CapacityInKB: 16 << 20,
	}
	nic := &types.VirtualVmxnet3{VirtualVmxnet: types.VirtualVmxnet{VirtualEthernetCard: types.VirtualEthernetCard{
		VirtualDevice: types.VirtualDevice{Key: -102, Backing: &types.VirtualEthernetCardNetworkBackingInfo{
			VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: "VM Network"},
		}},
		AddressType: string(types.VirtualEthernetCardMacTypeGenerated),
	}}}
	add := types.VirtualDeviceConfigSpecOperationAdd
	return []types.BaseVirtualDeviceConfigSpec{
		&types.VirtualDeviceConfigSpec{Operation: add, Device: ctrl},
		&types.VirtualDeviceConfigSpec{Operation: add, FileOperation: types.VirtualDeviceConfigSpecFileOperationCreate, Device: disk},
		&types.VirtualDeviceConfigSpec{Operation: add, Device: nic},
	}
}

// waitTask waits for a simulator task by polling it in process, which is
// much cheaper than a property collector's WaitForUpdates.
func (s *Simulator) waitTask(ref types.ManagedObjectReference) (types.AnyType, error) {
	t, ok := s.model.Map().Get(ref).(*simulator.Task)
	if !ok {
		return nil, fmt.Errorf("task %s not found", ref.Value)
	}
	t.Wait()
	var info types.TaskInfo
	s.model.Map().WithLock(&simulator.Context{}, t, func() { info = t.Info })
	if info.Error != nil {
		return nil, task.Error{LocalizedMethodFault: info.Error}
	}
	return info.Result, nil
}

// URL is the SDK endpoint, with the simulator's credentials.
func (s *Simulator) URL() string {
	return s.server.URL.String()
}

// Username the simulator accepts.
func (s *Simulator) Username() string { return simUser }

// Password the simulator accepts.
func (s *Simulator) Password() string { return simPassword }

// Config is a driver configuration for this simulator, ready for New.
func (s *Simulator) Config() Config {
	u := *s.server.URL
	u.User = nil
	return Config{
		URL:      u.String(),
		Username: simUser,
		Password: simPassword,
		Insecure: true,
	}
}

// HostNames lists the simulated hosts, sorted.
func (s *Simulator) HostNames() []string {
	return append([]string(nil), s.names...)
}

// SetHostConnection changes a host's runtime.connectionState as vCenter
// would when the host crashes or comes back; property collectors see it.
func (s *Simulator) SetHostConnection(host string, state drivers.Connection) error {
	h, ok := s.hosts[host]
	if !ok {
		return fmt.Errorf("simulator: set connection of host %q: %w", host, drivers.ErrNotFound)
	}
	var vs types.HostSystemConnectionState
	switch state {
	case drivers.Connected:
		vs = types.HostSystemConnectionStateConnected
	case drivers.Disconnected:
		vs = types.HostSystemConnectionStateDisconnected
	case drivers.NotResponding:
		vs = types.HostSystemConnectionStateNotResponding
	default:
		return fmt.Errorf("simulator: set connection of host %q: unknown state %q", host, state)
	}
	ctx := s.simContext()
	// Summary.Runtime points at Runtime, so one change updates both paths.
	ctx.Map.AtomicUpdate(ctx, h, []types.PropertyChange{
		{Name: "runtime.connectionState", Val: vs},
	})
	return nil
}

// Close stops the server and removes the simulator's files.
func (s *Simulator) Close() {
	s.closeOnce.Do(func() {
		if s.server != nil {
			s.server.Close()
		}
		s.model.Remove()
	})
}

// InjectFault makes every call of method (e.g. "RelocateVM_Task") on the
// object named object fail with a fault carrying msg, until ClearFaults.
func (s *Simulator) InjectFault(method, object, msg string) {
	s.model.Service.AddFaultRule(&simulator.FaultInjectionRule{
		MethodName:  method,
		ObjectType:  "*",
		ObjectName:  object,
		Probability: 1,
		FaultType:   simulator.FaultTypeGeneric,
		Message:     msg,
		Enabled:     true,
	})
}

// ClearFaults removes every injected fault.
func (s *Simulator) ClearFaults() {
	s.model.Service.ClearFaultRules()
}

// PowerOffHost cuts a simulated host's power: every VM on it is powered
// off at once, as a power fence would leave them. Dev mode's fence method.
func (s *Simulator) PowerOffHost(host string) (int, error) {
	h, ok := s.hosts[host]
	if !ok {
		return 0, fmt.Errorf("simulator: power off host %q: %w", host, drivers.ErrNotFound)
	}
	ctx := s.simContext()
	n := 0
	for _, e := range ctx.Map.All("VirtualMachine") {
		vm, ok := e.(*simulator.VirtualMachine)
		if !ok {
			continue
		}
		var on bool
		ctx.Map.WithLock(ctx, vm, func() {
			on = vm.Runtime.Host != nil && *vm.Runtime.Host == h.Self &&
				vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff
		})
		if !on {
			continue
		}
		ctx.Map.AtomicUpdate(ctx, vm, []types.PropertyChange{
			{Name: "runtime.powerState", Val: types.VirtualMachinePowerStatePoweredOff},
			{Name: "summary.runtime.powerState", Val: types.VirtualMachinePowerStatePoweredOff},
		})
		n++
	}
	return n, nil
}
