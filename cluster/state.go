// Package cluster holds Herd's replicated state: the types every node agrees
// on, the typed commands that change them, the raft FSM that applies those
// commands, and the encoding of log entries and snapshots. The raft node
// that replicates them is cluster/raftnode; gossip is cluster/gossip.
//
// Values stored in State are immutable once stored: Apply replaces a *Host or
// *VM with a new value and never changes one in place, so a shallow copy of the
// maps (Snapshot) is a consistent, race-free view for planners and readers.
package cluster

import (
	"sort"
	"time"

	"github.com/herd-project/herd/cluster/vmdef"
)

// AdminStatus is set by people or policy and says whether a host takes VMs.
type AdminStatus string

const (
	// Available hosts are valid placement targets.
	Available AdminStatus = "AVAILABLE"
	// NotAccepting hosts take no new or automatic placements; an operator
	// may still migrate a VM there explicitly.
	NotAccepting AdminStatus = "NOT_ACCEPTING"
	// InMaintenance hosts are being emptied or kept empty.
	InMaintenance AdminStatus = "MAINTENANCE"
	// Offline hosts are declared dead: their VMs are recreated elsewhere once
	// the host is fenced.
	Offline AdminStatus = "OFFLINE"
)

// Valid reports whether s is one of the four admin statuses.
func (s AdminStatus) Valid() bool {
	switch s {
	case Available, NotAccepting, InMaintenance, Offline:
		return true
	}
	return false
}

// MaintenanceState is where a host is in the maintenance life cycle.
type MaintenanceState string

const (
	MaintenanceOff      MaintenanceState = "off"
	MaintenanceEntering MaintenanceState = "entering"
	MaintenanceOn       MaintenanceState = "on"
	MaintenanceError    MaintenanceState = "error"
	// MaintenanceCancelled: an operator cancelled the evacuation; the host
	// stays closed (not an error) until the operation is retried or
	// maintenance is disabled.
	MaintenanceCancelled MaintenanceState = "cancelled"
	MaintenanceExiting   MaintenanceState = "exiting"
)

// Health is the fused view of whether a host's hypervisor is alive.
type Health string

const (
	HealthUnknown Health = "unknown"
	HealthAlive   Health = "alive"
	HealthSuspect Health = "suspect"
	HealthDead    Health = "dead"
	HealthFenced  Health = "fenced"
)

// Connection is the driver's own view of a host's management connection.
type Connection string

const (
	Connected     Connection = "connected"
	Disconnected  Connection = "disconnected"
	NotResponding Connection = "notResponding"
)

// PowerState of a VM.
type PowerState string

const (
	PoweredOn  PowerState = "running"
	PoweredOff PowerState = "stopped"
	Suspended  PowerState = "suspended"
)

// Host is one hypervisor host.
type Host struct {
	Name string `json:"name"`
	// Driver is the name of the driver instance (from herd.yaml) that
	// manages the host.
	Driver string `json:"driver"`
	// Group is the driver's own grouping (a vSphere cluster): VMs move only
	// between hosts of one group.
	Group       string            `json:"group,omitempty"`
	Admin       AdminStatus       `json:"admin_status"`
	AdminReason string            `json:"admin_reason,omitempty"`
	Maintenance MaintenanceState  `json:"maintenance_state"`
	Operation   string            `json:"operation,omitempty"`
	Health      Health            `json:"health"`
	Connection  Connection        `json:"connection"`
	MemoryBytes int64             `json:"memory_bytes"`
	CPUs        int               `json:"cpus"`
	CPUMHz      int64             `json:"cpu_mhz"`
	Labels      map[string]string `json:"labels,omitempty"`
	// DownSince is when the host's health last turned dead (zero while it
	// is not dead or fenced): recovery durations count from it.
	DownSince time.Time `json:"down_since,omitempty"`
	// FencedBy is the fencing method that confirmed the host is off
	// (power, lease, dev, operator) while its health is fenced.
	FencedBy string `json:"fenced_by,omitempty"`
	// FenceFailure says why no fencing method confirmed a dead host; empty
	// when none was tried or one confirmed.
	FenceFailure string `json:"fence_failure,omitempty"`
	// LeaseTTL is set while the host's agent holds a lease: the agent stops
	// the host's VMs when it cannot renew it for that long. Zero: no agent
	// lease, so lease expiry fences nothing.
	LeaseTTL time.Duration `json:"lease_ttl,omitempty"`
	// Seen is when inventory sync last changed the host's hardware facts.
	Seen time.Time `json:"seen"`
}

// VM is one virtual machine as Herd knows it.
type VM struct {
	// ID is the driver's stable identifier (a vSphere instance UUID, a
	// libvirt domain UUID).
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Host        string     `json:"host"`
	Driver      string     `json:"driver"`
	MemoryBytes int64      `json:"memory_bytes"`
	VCPUs       int        `json:"vcpus"`
	Power       PowerState `json:"power_state"`
	// Priority is the availability priority: higher moves and restarts first.
	Priority int `json:"priority"`
	// Unmovable says why the VM cannot be migrated (pinned, local devices);
	// empty when it can.
	Unmovable string `json:"unmovable,omitempty"`
	// Autostart: its host starts it when it boots (libvirt). Herd turns it
	// off for the VMs it recovers (see the recovery controller).
	Autostart bool `json:"autostart,omitempty"`
	// Definition is what the driver needs to recreate the VM elsewhere;
	// opaque to Herd, stored compressed and shared between VMs.
	Definition vmdef.Definition `json:"definition,omitempty,omitzero"`
	// RecreatedFrom is the ID the VM had before a recovery gave it a new
	// one; empty when it kept its identity (every driver keeps it now).
	RecreatedFrom string `json:"recreated_from,omitempty"`
	// Stale is read from states written before stale copies were records
	// of their own: ReadState turns such a VM into a StaleCopy.
	Stale bool `json:"stale,omitempty"`
	// StepIndex is the raft index of the last operation step that changed
	// the VM (a finished migration, recreation, power change): an
	// inventory read against an older state does not overwrite it.
	StepIndex uint64 `json:"step_index,omitempty"`
}

// StaleCopy is what a fenced host still holds of a VM that was recreated
// elsewhere. It is not a VM: the VM is where it was recreated, and this is
// its leftover, whose power is unknown while the host is down. It is
// destroyed when the host answers again (the host cannot become AVAILABLE
// before), and nothing else is ever done to it.
type StaleCopy struct {
	// VM is the Herd id of the VM it is a leftover of.
	VM string `json:"vm"`
	// ID is the driver's id of the leftover: the VM's own id, as recovery
	// keeps a VM's identity (it differs only for copies recorded before).
	ID     string `json:"id"`
	Name   string `json:"name"`
	Host   string `json:"host"`
	Driver string `json:"driver"`
	// Since is when the VM was recreated elsewhere.
	Since time.Time `json:"since"`
}

// StaleKey is the key of the stale copy of driver id id on host.
func StaleKey(host, id string) string { return host + "/" + id }

// moveLegacyStale turns the VMs marked stale of a state written before
// stale copies were records of their own into stale copies.
func (s *State) moveLegacyStale() {
	if s.StaleCopies == nil {
		s.StaleCopies = map[string]*StaleCopy{}
	}
	for id, vm := range s.VMs {
		if !vm.Stale {
			continue
		}
		owner := id
		for _, nv := range s.VMs {
			if nv.RecreatedFrom == id {
				owner = nv.ID
			}
		}
		s.StaleCopies[StaleKey(vm.Host, id)] = &StaleCopy{VM: owner, ID: id, Name: vm.Name, Host: vm.Host, Driver: vm.Driver}
		s.deleteVM(id)
	}
}

// Server is a raft voter: its raft and API addresses, so that followers can
// forward writes to the leader's API.
type Server struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
}

// Event is one entry in the action log.
type Event struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Type      string    `json:"type"`
	Actor     string    `json:"actor"`
	Host      string    `json:"host,omitempty"`
	VM        string    `json:"vm,omitempty"`
	Operation string    `json:"operation,omitempty"`
	Message   string    `json:"message"`
	// Target is, for an event about a VM moving or being recreated or
	// registered elsewhere, the host it goes to (Host is where it comes
	// from): the event belongs to both hosts' stories.
	Target string `json:"target,omitempty"`
}

// DefaultEventRetention is how many events the log keeps when not told.
const DefaultEventRetention = 20000

// State is the whole replicated state.
type State struct {
	Hosts map[string]*Host `json:"hosts"`
	VMs   map[string]*VM   `json:"vms"`
	// StaleCopies are the leftovers of recovered VMs on fenced hosts, by
	// StaleKey(host, id).
	StaleCopies map[string]*StaleCopy `json:"stale_copies,omitempty"`
	Servers     map[string]*Server    `json:"servers"`
	// Silences are the Alertmanager silences of hosts in maintenance, by
	// host.
	Silences map[string]*Silence `json:"silences,omitempty"`
	// Policy is the policy in force; nil until one is applied.
	Policy *Policy `json:"policy,omitempty"`
	// Operations by id: running ones and the most recent ended ones.
	Operations map[string]*Operation `json:"operations"`
	// Rollouts by id: running ones and the most recent ended ones.
	Rollouts map[string]*Rollout `json:"rollouts,omitempty"`
	// Events is the action log, oldest first, at most EventRetention long.
	Events         []Event `json:"events"`
	EventRetention int     `json:"event_retention"`
	NextEventSeq   uint64  `json:"next_event_seq"`
	// Index is the raft index of the last command applied.
	Index uint64 `json:"index"`

	// usageOf is the state's Usage, kept as its VMs change, on the FSM's
	// live state only (see track); nil elsewhere.
	usageOf *Usage
}

// NewState returns an empty state.
func NewState() *State {
	return &State{
		Hosts:          map[string]*Host{},
		VMs:            map[string]*VM{},
		StaleCopies:    map[string]*StaleCopy{},
		Servers:        map[string]*Server{},
		Silences:       map[string]*Silence{},
		Operations:     map[string]*Operation{},
		Rollouts:       map[string]*Rollout{},
		EventRetention: DefaultEventRetention,
		NextEventSeq:   1,
	}
}

// Snapshot returns a copy of s that shares its immutable values. It is safe
// to read without locks while s keeps changing.
func (s *State) Snapshot() *State {
	c := &State{
		Hosts:          make(map[string]*Host, len(s.Hosts)),
		VMs:            make(map[string]*VM, len(s.VMs)),
		StaleCopies:    make(map[string]*StaleCopy, len(s.StaleCopies)),
		Servers:        make(map[string]*Server, len(s.Servers)),
		Silences:       make(map[string]*Silence, len(s.Silences)),
		Operations:     make(map[string]*Operation, len(s.Operations)),
		Rollouts:       make(map[string]*Rollout, len(s.Rollouts)),
		Events:         s.Events[:len(s.Events):len(s.Events)],
		EventRetention: s.EventRetention,
		NextEventSeq:   s.NextEventSeq,
		Index:          s.Index,
		Policy:         s.Policy,
	}
	for k, v := range s.Hosts {
		c.Hosts[k] = v
	}
	for k, v := range s.VMs {
		c.VMs[k] = v
	}
	for k, v := range s.StaleCopies {
		c.StaleCopies[k] = v
	}
	for k, v := range s.Servers {
		c.Servers[k] = v
	}
	for k, v := range s.Silences {
		c.Silences[k] = v
	}
	for k, v := range s.Operations {
		c.Operations[k] = v
	}
	for k, v := range s.Rollouts {
		c.Rollouts[k] = v
	}
	return c
}

// HostNames returns the host names in order.
func (s *State) HostNames() []string {
	names := make([]string, 0, len(s.Hosts))
	for n := range s.Hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// StaleOn returns the stale copies on host, ordered by name then id.
func (s *State) StaleOn(host string) []*StaleCopy {
	var out []*StaleCopy
	for _, c := range s.StaleCopies {
		if c.Host == host {
			out = append(out, c)
		}
	}
	sortStale(out)
	return out
}

// StaleOf returns the stale copies whose driver id is id (on any host),
// ordered by host.
func (s *State) StaleOf(id string) []*StaleCopy {
	var out []*StaleCopy
	for _, c := range s.StaleCopies {
		if c.ID == id {
			out = append(out, c)
		}
	}
	sortStale(out)
	return out
}

// SortedStale returns every stale copy ordered by host, name and id.
func (s *State) SortedStale() []*StaleCopy {
	out := make([]*StaleCopy, 0, len(s.StaleCopies))
	for _, c := range s.StaleCopies {
		out = append(out, c)
	}
	sortStale(out)
	return out
}

func sortStale(cs []*StaleCopy) {
	sort.Slice(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.ID < b.ID
	})
}

// HostUsage is what a host's VMs take.
type HostUsage struct {
	VMs             int   `json:"vms"`
	RunningVMs      int   `json:"running_vms"`
	MemoryUsedBytes int64 `json:"memory_used_bytes"` // of running VMs
	VCPUsUsed       int   `json:"vcpus_used"`        // of running VMs
}

// Usage sums the VMs of every host in one pass.
func (s *State) Usage() map[string]HostUsage {
	return s.usage(nil)
}

// usage is Usage, also counting the VMs by power state into byPower when
// it is not nil, in the same pass over every VM.
func (s *State) usage(byPower map[PowerState]int) map[string]HostUsage {
	u := make(map[string]HostUsage, len(s.Hosts))
	var running int
	for _, vm := range s.VMs {
		h := u[vm.Host]
		h.VMs++
		if vm.Power == PoweredOn {
			running++
			h.RunningVMs++
			h.MemoryUsedBytes += vm.MemoryBytes
			h.VCPUsUsed += vm.VCPUs
		} else if byPower != nil {
			byPower[vm.Power]++
		}
		u[vm.Host] = h
	}
	if byPower != nil && running > 0 {
		byPower[PoweredOn] = running
	}
	return u
}

// VMsOn returns the VMs on host, ordered by name then id.
func (s *State) VMsOn(host string) []*VM {
	var out []*VM
	for _, vm := range s.VMs {
		if vm.Host == host {
			out = append(out, vm)
		}
	}
	sortVMs(out)
	return out
}

// SortedVMs returns every VM ordered by name then id.
func (s *State) SortedVMs() []*VM {
	out := make([]*VM, 0, len(s.VMs))
	for _, vm := range s.VMs {
		out = append(out, vm)
	}
	sortVMs(out)
	return out
}

func sortVMs(vms []*VM) {
	sort.Slice(vms, func(i, j int) bool {
		if vms[i].Name != vms[j].Name {
			return vms[i].Name < vms[j].Name
		}
		return vms[i].ID < vms[j].ID
	})
}

// EventFilter selects events from the log.
type EventFilter struct {
	Host, VM, Operation string
	Since               time.Time
	Limit               int
}

// QueryEvents returns the events that match f, oldest first. With a Limit,
// the newest Limit matches are returned.
func (s *State) QueryEvents(f EventFilter) []Event {
	// Events are in time order: find the first at or after Since.
	start := sort.Search(len(s.Events), func(i int) bool { return !s.Events[i].Time.Before(f.Since) })
	var out []Event
	for _, e := range s.Events[start:] {
		if f.Host != "" && e.Host != f.Host && e.Target != f.Host {
			continue
		}
		if f.VM != "" && e.VM != f.VM {
			continue
		}
		if f.Operation != "" && e.Operation != f.Operation {
			continue
		}
		out = append(out, e)
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out
}
