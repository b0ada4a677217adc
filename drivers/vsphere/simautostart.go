package vsphere

import (
	"slices"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// autoStartManager is a host's HostAutoStartManager, which govmomi's
// simulator (v0.56) does not serve: it keeps the host's automatic startup
// list, as its config and as the host's config.autoStart (where ESXi
// reports it too), and changes it on ReconfigureAutostart as ESXi does — a
// VM given startAction none and startOrder -1 leaves the list.
type autoStartManager struct {
	mo.HostAutoStartManager
	host *simulator.HostSystem
}

// addAutoStartManagers gives every host of the simulator its manager.
func (s *Simulator) addAutoStartManagers() {
	ctx := s.simContext()
	for _, name := range s.names {
		h := s.hosts[name]
		m := &autoStartManager{host: h}
		m.Self = types.ManagedObjectReference{Type: "HostAutoStartManager", Value: "autostart-" + h.Self.Value}
		m.Config.Defaults = &types.AutoStartDefaults{Enabled: types.NewBool(true), StartDelay: 120, StopDelay: 120,
			WaitForHeartbeat: types.NewBool(false), StopAction: "PowerOff"}
		ctx.Map.Put(m)
		ctx.WithLock(h, func() {
			h.ConfigManager.AutoStartManager = &m.Self
			cfg := m.Config
			h.Config.AutoStart = &cfg
		})
	}
}

// ReconfigureAutostart changes the defaults and the VMs the spec names.
func (m *autoStartManager) ReconfigureAutostart(ctx *simulator.Context, req *types.ReconfigureAutostart) soap.HasFault {
	cfg := types.HostAutoStartManagerConfig{Defaults: m.Config.Defaults, PowerInfo: slices.Clone(m.Config.PowerInfo)}
	if req.Spec.Defaults != nil {
		cfg.Defaults = req.Spec.Defaults
	}
	for _, p := range req.Spec.PowerInfo {
		i := slices.IndexFunc(cfg.PowerInfo, func(q types.AutoStartPowerInfo) bool { return q.Key == p.Key })
		switch {
		case p.StartAction == "none" && p.StartOrder < 0:
			if i >= 0 {
				cfg.PowerInfo = slices.Delete(cfg.PowerInfo, i, i+1)
			}
		case i >= 0:
			cfg.PowerInfo[i] = p
		default:
			cfg.PowerInfo = append(cfg.PowerInfo, p)
		}
	}
	m.Config = cfg
	ctx.WithLock(m.host, func() {
		c := cfg
		m.host.Config.AutoStart = &c
	})
	return &methods.ReconfigureAutostartBody{Res: &types.ReconfigureAutostartResponse{}}
}

// AutostartVMs names the VMs in host's automatic startup list, read in
// process: what the host would start if it booted now.
func (s *Simulator) AutostartVMs(host string) []string {
	h, ok := s.hosts[host]
	if !ok || h.ConfigManager.AutoStartManager == nil {
		return nil
	}
	ctx := s.simContext()
	m, ok := ctx.Map.Get(*h.ConfigManager.AutoStartManager).(*autoStartManager)
	if !ok {
		return nil
	}
	var infos []types.AutoStartPowerInfo
	ctx.WithLock(m, func() { infos = slices.Clone(m.Config.PowerInfo) })
	var names []string
	for _, p := range infos {
		if vm, ok := ctx.Map.Get(p.Key).(*simulator.VirtualMachine); ok {
			names = append(names, vm.Name)
		} else {
			names = append(names, p.Key.Value) // unregistered since
		}
	}
	return names
}
