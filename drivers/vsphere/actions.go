package vsphere

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/herd-project/herd/drivers"
)

const (
	// hardOffMargin is how long before ctx's deadline Shutdown gives up on
	// the guest and powers the VM off.
	hardOffMargin = 2 * time.Second
	// defaultShutdownWait bounds a guest shutdown when ctx has no deadline.
	defaultShutdownWait = 5 * time.Minute
	// shutdownPoll is how often Shutdown checks the power state.
	shutdownPoll = 250 * time.Millisecond
	// recreateNames is how many names Recreate tries (name, name-r1, …)
	// when the stale VM still holds the original name or files.
	recreateNames = 4
)

// Migrate moves VM id to host target: a vMotion of a running VM (Live) or a
// cold migration of a powered-off one (Offline), through RelocateVM_Task
// with the target host and its cluster's root resource pool.
func (d *Driver) Migrate(ctx context.Context, id, target string, kind drivers.MigrationKind) error {
	fail := func(err error) error { return fmt.Errorf("migrate %s to %s: %w", id, target, err) }
	var want types.VirtualMachinePowerState
	switch kind {
	case drivers.Live:
		want = types.VirtualMachinePowerStatePoweredOn
	case drivers.Offline:
		want = types.VirtualMachinePowerStatePoweredOff
	default:
		return fail(fmt.Errorf("migration kind %q: %w", kind, drivers.ErrNotSupported))
	}
	ref, err := d.vmRef(ctx, id)
	if err != nil {
		return fail(err)
	}
	h, err := d.host(ctx, target)
	if err != nil {
		return fail(err)
	}
	var vm mo.VirtualMachine
	pc := property.DefaultCollector(d.client.Client)
	if err := pc.RetrieveOne(ctx, ref, []string{"runtime.powerState", "runtime.host"}, &vm); err != nil {
		return fail(d.failVM(id, err))
	}
	if state := vm.Runtime.PowerState; state != want {
		return fail(fmt.Errorf("%s migration needs a %s VM, it is %s", kind, want, state))
	}
	if vm.Runtime.Host != nil && *vm.Runtime.Host == h.ref {
		d.log.Info("VM already on target host", "vm", id, "host", target)
		return nil
	}
	spec := types.VirtualMachineRelocateSpec{Host: &h.ref, Pool: &h.pool}
	task, err := object.NewVirtualMachine(d.client.Client, ref).Relocate(ctx, spec, types.VirtualMachineMovePriorityDefaultPriority)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		return fail(d.failVM(id, err))
	}
	d.log.Info("migrated VM", "vm", id, "host", target, "kind", kind)
	return nil
}

// PowerOn starts a VM; a running VM is left as it is.
func (d *Driver) PowerOn(ctx context.Context, id string) error {
	if err := d.setPower(ctx, id, types.VirtualMachinePowerStatePoweredOn); err != nil {
		return fmt.Errorf("power on %s: %w", id, err)
	}
	return nil
}

// PowerOff stops a VM at once; a stopped VM is left as it is.
func (d *Driver) PowerOff(ctx context.Context, id string) error {
	if err := d.setPower(ctx, id, types.VirtualMachinePowerStatePoweredOff); err != nil {
		return fmt.Errorf("power off %s: %w", id, err)
	}
	return nil
}

func (d *Driver) setPower(ctx context.Context, id string, state types.VirtualMachinePowerState) error {
	ref, err := d.vmRef(ctx, id)
	if err != nil {
		return err
	}
	vm := object.NewVirtualMachine(d.client.Client, ref)
	var task *object.Task
	if state == types.VirtualMachinePowerStatePoweredOn {
		task, err = vm.PowerOn(ctx)
	} else {
		task, err = vm.PowerOff(ctx)
	}
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil && !isInvalidPowerState(err, state) {
		return d.failVM(id, err)
	}
	d.log.Debug("VM power set", "vm", id, "state", state)
	return nil
}

// Shutdown asks the guest to shut down and waits for the VM to stop. It
// powers the VM off when ctx's deadline (or defaultShutdownWait) is within
// hardOffMargin, or when the guest cannot be asked (no VMware Tools).
func (d *Driver) Shutdown(ctx context.Context, id string) error {
	fail := func(err error) error { return fmt.Errorf("shut down %s: %w", id, err) }
	ref, err := d.vmRef(ctx, id)
	if err != nil {
		return fail(err)
	}
	vm := object.NewVirtualMachine(d.client.Client, ref)
	err = drivers.GracefulShutdown{
		Wait: defaultShutdownWait, Margin: hardOffMargin, Poll: shutdownPoll,
		Log: d.log.With("vm", id), HardOff: "powering off",
		Ask: vm.ShutdownGuest,
		AskFailed: func(err error) (bool, error) {
			switch {
			case isInvalidPowerState(err, types.VirtualMachinePowerStatePoweredOff):
				return true, nil
			case ctx.Err() != nil || errors.Is(classify(err), drivers.ErrNotFound):
				return false, d.failVM(id, err)
			}
			return false, nil
		},
		IsOff: func(ctx context.Context) (bool, error) {
			state, err := vm.PowerState(ctx)
			if err != nil {
				return false, d.failVM(id, err)
			}
			return state == types.VirtualMachinePowerStatePoweredOff, nil
		},
		Canceled: func(ctx context.Context) error { return d.failVM(id, ctx.Err()) },
		PowerOff: func(ctx context.Context) error {
			return d.setPower(ctx, id, types.VirtualMachinePowerStatePoweredOff)
		},
	}.Run(ctx)
	if err != nil {
		return fail(err)
	}
	return nil
}

// Recreate creates a powered-off VM on host from a Definition that
// Inventory produced, and returns its ID. When the name or its files are
// taken (the stale original still exists), it tries name-r1, name-r2….
func (d *Driver) Recreate(ctx context.Context, definitionJSON []byte, host string) (string, error) {
	fail := func(err error) error { return fmt.Errorf("recreate VM on %s: %w", host, err) }
	var def definition
	if err := json.Unmarshal(definitionJSON, &def); err != nil {
		return "", fail(fmt.Errorf("decode definition: %w", err))
	}
	if def.Name == "" || def.MemoryMB <= 0 || def.NumCPU <= 0 {
		return "", fail(fmt.Errorf("definition needs a name, memory and CPUs, got %+v", def))
	}
	if len(def.Unrecoverable) > 0 {
		return "", fail(drivers.WithKind(fmt.Errorf("%s cannot be recreated with all its devices: %s; recover it by hand (register its .vmx on another host)", def.Name, strings.Join(def.Unrecoverable, "; ")), drivers.ErrNotSupported))
	}
	devices, err := deviceChanges(def.deviceSet)
	if err != nil {
		return "", fail(fmt.Errorf("devices of %s: %w", def.Name, err))
	}
	h, err := d.host(ctx, host)
	if err != nil {
		return "", fail(err)
	}
	if def.Datastore == "" {
		if def.Datastore, err = d.hostDatastore(ctx, h.ref); err != nil {
			return "", fail(err)
		}
	}
	if id, done, err := d.releaseOriginal(ctx, def, h.ref); err != nil || done {
		if err != nil {
			return "", fail(err)
		}
		return id, nil
	}
	c := d.client.Client
	pool, hs := object.NewResourcePool(c, h.pool), object.NewHostSystem(c, h.ref)
	for i := range recreateNames {
		name := def.Name
		if i > 0 {
			name = fmt.Sprintf("%s-r%d", def.Name, i)
		}
		spec := types.VirtualMachineConfigSpec{
			Name:         name,
			Uuid:         def.UUID,
			InstanceUuid: def.InstanceUUID,
			GuestId:      def.GuestID,
			MemoryMB:     def.MemoryMB,
			NumCPUs:      def.NumCPU,
			Files:        &types.VirtualMachineFileInfo{VmPathName: "[" + def.Datastore + "]"},
			// The original's disks, attached from their files; its
			// adapters with their MAC addresses.
			DeviceChange: devices,
		}
		task, err := d.vmFolder.CreateVM(ctx, spec, pool, hs)
		var info *types.TaskInfo
		if err == nil {
			info, err = task.WaitForResult(ctx)
		}
		if isNameTaken(err) {
			d.log.Info("VM name taken, trying another", "name", name, "err", err)
			continue
		}
		if err != nil {
			return "", fail(fmt.Errorf("create %s: %w", name, classify(err)))
		}
		ref, ok := info.Result.(types.ManagedObjectReference)
		if !ok {
			return "", fail(fmt.Errorf("create %s: task result is %T, not a VM", name, info.Result))
		}
		id, err := d.vmID(ctx, ref)
		if err != nil {
			return "", fail(fmt.Errorf("created %s (%s): %w", name, ref.Value, err))
		}
		d.rememberVM(id, ref)
		d.log.Info("recreated VM", "vm", id, "name", name, "host", host)
		return id, nil
	}
	return "", fail(fmt.Errorf("names %s to %s-r%d are all taken", def.Name, def.Name, recreateNames-1))
}

// releaseOriginal makes room for a VM recreated on target with its
// original identity. vCenter keeps one VM object per name and instance
// UUID, and the original's object sits on the host the caller fenced: it is
// unregistered (its files stay: the recreated VM attaches its disks), as a
// stale copy would be. The object found already on target is an earlier
// attempt's copy: done, with its id. An original that runs on a connected
// host is refused: that host is not down, and the VM would run twice.
func (d *Driver) releaseOriginal(ctx context.Context, def definition, target types.ManagedObjectReference) (string, bool, error) {
	if def.InstanceUUID == "" {
		return "", false, nil
	}
	d.forgetVM(def.InstanceUUID) // look it up afresh
	ref, err := d.vmRef(ctx, def.InstanceUUID)
	if errors.Is(err, drivers.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	var vm mo.VirtualMachine
	pc := property.DefaultCollector(d.client.Client)
	if err := pc.RetrieveOne(ctx, ref, []string{"runtime.host", "runtime.powerState"}, &vm); err != nil {
		return "", false, fmt.Errorf("read original %s: %w", def.Name, d.failVM(def.InstanceUUID, err))
	}
	if vm.Runtime.Host != nil && *vm.Runtime.Host == target {
		return def.InstanceUUID, true, nil
	}
	if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn && vm.Runtime.Host != nil {
		var hs mo.HostSystem
		if err := pc.RetrieveOne(ctx, *vm.Runtime.Host, []string{"name", "runtime.connectionState"}, &hs); err != nil {
			return "", false, fmt.Errorf("read host of original %s: %w", def.Name, classify(err))
		}
		if hs.Runtime.ConnectionState == types.HostSystemConnectionStateConnected {
			return "", false, fmt.Errorf("the original %s runs on host %s, which is connected: not recreated", def.Name, hs.Name)
		}
	}
	// The fenced host must not start the original when it boots (Herd
	// turns autostart off beforehand too; this covers a late change).
	if err := d.SetAutostart(ctx, def.InstanceUUID, false); err != nil {
		d.log.Info("remove the original of a VM to recreate from its host's automatic startup", "vm", def.InstanceUUID, "err", err)
	}
	if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff {
		// What vCenter still says of a VM on a host it lost; vCenter may
		// refuse to power it off there, and unregisters it anyway.
		if err := d.setPower(ctx, def.InstanceUUID, types.VirtualMachinePowerStatePoweredOff); err != nil {
			d.log.Info("power off the original of a VM to recreate", "vm", def.InstanceUUID, "err", err)
		}
	}
	if err := object.NewVirtualMachine(d.client.Client, ref).Unregister(ctx); err != nil {
		return "", false, fmt.Errorf("unregister original %s: %w", def.Name, d.failVM(def.InstanceUUID, err))
	}
	d.forgetVM(def.InstanceUUID)
	d.log.Info("unregistered the original of a VM to recreate (its files kept)", "vm", def.InstanceUUID, "name", def.Name)
	return "", false, nil
}

// SetAutostart adds VM id to its host's automatic startup (on) or removes
// it (off), through the host's HostAutoStartManager. Herd turns it off for
// the VMs it recovers, as vSphere HA does: an ESXi host that boots after
// being fenced must not start its copy of a VM recreated elsewhere.
func (d *Driver) SetAutostart(ctx context.Context, id string, on bool) error {
	fail := func(err error) error { return fmt.Errorf("set autostart of %s: %w", id, err) }
	ref, err := d.vmRef(ctx, id)
	if err != nil {
		return fail(err)
	}
	pc := property.DefaultCollector(d.client.Client)
	var vm mo.VirtualMachine
	if err := pc.RetrieveOne(ctx, ref, []string{"runtime.host"}, &vm); err != nil {
		return fail(d.failVM(id, err))
	}
	if vm.Runtime.Host == nil {
		return fail(errors.New("the VM has no host"))
	}
	var hs mo.HostSystem
	if err := pc.RetrieveOne(ctx, *vm.Runtime.Host, []string{"configManager.autoStartManager"}, &hs); err != nil {
		return fail(classify(err))
	}
	if hs.ConfigManager.AutoStartManager == nil {
		return fail(drivers.WithKind(errors.New("its host has no automatic startup manager"), drivers.ErrNotSupported))
	}
	info := types.AutoStartPowerInfo{Key: ref, StartAction: "none", StartDelay: -1, StartOrder: -1, StopAction: "none", StopDelay: -1,
		WaitForHeartbeat: types.AutoStartWaitHeartbeatSettingSystemDefault}
	if on {
		info.StartAction, info.StartOrder, info.StopAction = "powerOn", 1, "systemDefault"
	}
	req := types.ReconfigureAutostart{This: *hs.ConfigManager.AutoStartManager, Spec: types.HostAutoStartManagerConfig{PowerInfo: []types.AutoStartPowerInfo{info}}}
	if _, err := methods.ReconfigureAutostart(ctx, d.client.Client, &req); err != nil {
		return fail(classify(err))
	}
	d.log.Info("VM autostart set", "vm", id, "autostart", on)
	return nil
}

// vmID reads the ID Inventory uses for the VM at ref.
func (d *Driver) vmID(ctx context.Context, ref types.ManagedObjectReference) (string, error) {
	var vm mo.VirtualMachine
	pc := property.DefaultCollector(d.client.Client)
	if err := pc.RetrieveOne(ctx, ref, []string{"config.instanceUuid", "config.uuid"}, &vm); err != nil {
		return "", classify(err)
	}
	if vm.Config == nil || (vm.Config.InstanceUuid == "" && vm.Config.Uuid == "") {
		return "", errors.New("VM has no UUID")
	}
	if vm.Config.InstanceUuid != "" {
		return vm.Config.InstanceUuid, nil
	}
	return vm.Config.Uuid, nil
}

// hostDatastore names the first datastore host mounts.
func (d *Driver) hostDatastore(ctx context.Context, ref types.ManagedObjectReference) (string, error) {
	c := d.client.Client
	var h mo.HostSystem
	if err := property.DefaultCollector(c).RetrieveOne(ctx, ref, []string{"datastore"}, &h); err != nil {
		return "", fmt.Errorf("datastores of host: %w", classify(err))
	}
	if len(h.Datastore) == 0 {
		return "", errors.New("host has no datastore")
	}
	name, err := object.NewDatastore(c, h.Datastore[0]).ObjectName(ctx)
	if err != nil {
		return "", fmt.Errorf("name of datastore %s: %w", h.Datastore[0].Value, classify(err))
	}
	return name, nil
}

// Destroy powers the VM id off if needed and unregisters it from vCenter,
// when it is on host (ErrNotFound otherwise: a recovered VM, same id, runs
// elsewhere). Its files stay on the datastore: a stale copy's disks are the
// disks the recreated VM runs on (Recreate attaches the same files), and
// deleting anything else is for an operator to decide.
func (d *Driver) Destroy(ctx context.Context, id, host string) error {
	ref, err := d.vmRef(ctx, id)
	if err != nil {
		return fmt.Errorf("destroy %s on %s: %w", id, host, err)
	}
	h, err := d.host(ctx, host)
	if err != nil {
		return fmt.Errorf("destroy %s on %s: %w", id, host, err)
	}
	var vm mo.VirtualMachine
	if err := property.DefaultCollector(d.client.Client).RetrieveOne(ctx, ref, []string{"runtime.host"}, &vm); err != nil {
		return fmt.Errorf("destroy %s on %s: %w", id, host, d.failVM(id, err))
	}
	if vm.Runtime.Host == nil || *vm.Runtime.Host != h.ref {
		return fmt.Errorf("destroy %s on %s: the VM is on another host: %w", id, host, drivers.ErrNotFound)
	}
	if err := d.setPower(ctx, id, types.VirtualMachinePowerStatePoweredOff); err != nil {
		return fmt.Errorf("destroy %s: %w", id, err)
	}
	if err := object.NewVirtualMachine(d.client.Client, ref).Unregister(ctx); err != nil {
		return fmt.Errorf("destroy %s: %w", id, d.failVM(id, err))
	}
	d.forgetVM(id)
	d.log.Info("destroyed VM (unregistered, its files kept)", "vm", id)
	return nil
}

// ProbeHost reports the host's runtime.connectionState.
func (d *Driver) ProbeHost(ctx context.Context, host string) (drivers.Connection, error) {
	h, err := d.host(ctx, host)
	if err != nil {
		return "", fmt.Errorf("probe host %s: %w", host, err)
	}
	var hs mo.HostSystem
	pc := property.DefaultCollector(d.client.Client)
	if err := pc.RetrieveOne(ctx, h.ref, []string{"runtime.connectionState"}, &hs); err != nil {
		return "", fmt.Errorf("probe host %s: %w", host, classify(err))
	}
	return connection(hs.Runtime.ConnectionState), nil
}
