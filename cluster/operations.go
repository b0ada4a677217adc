package cluster

import (
	"fmt"
	"sort"
	"time"
)

// OpKind is what an operation does.
type OpKind string

const (
	// OpEvacuate empties a host entering maintenance.
	OpEvacuate OpKind = "evacuate"
	// OpExit brings a host out of maintenance (powering on and migrating
	// back the VMs asked for).
	OpExit OpKind = "exit"
	// OpMigrate is one operator-requested migration.
	OpMigrate OpKind = "migrate"
	// OpBalance runs the balancer's moves.
	OpBalance OpKind = "balance"
)

// OpState is where an operation is.
type OpState string

const (
	OpRunning   OpState = "running"
	OpSucceeded OpState = "succeeded"
	OpFailed    OpState = "failed"
	OpCancelled OpState = "cancelled"
)

// Terminal reports whether the operation has ended.
func (s OpState) Terminal() bool { return s == OpSucceeded || s == OpFailed || s == OpCancelled }

// Item actions.
const (
	ActionLiveMigrate    = "live-migrate"
	ActionOfflineMigrate = "offline-migrate"
	ActionShutdown       = "shutdown"
	ActionPowerOn        = "power-on"
)

// ItemState is where one VM of an operation is.
type ItemState string

const (
	ItemPending   ItemState = "pending"
	ItemRunning   ItemState = "running"
	ItemDone      ItemState = "done"
	ItemFailed    ItemState = "failed"
	ItemCancelled ItemState = "cancelled"
)

// Terminal reports whether the item has ended.
func (s ItemState) Terminal() bool { return s == ItemDone || s == ItemFailed || s == ItemCancelled }

// MaxAttempts is how often one VM is tried before its operation fails,
// unless the operation says otherwise.
const MaxAttempts = 3

// MaxTargetLosses is how many failed steps of one VM whose target host was
// lost during the step (it crashed, or stopped answering) are not counted
// as attempts: the VM was not at fault, and it goes elsewhere next. Bounded,
// so that a VM is not tried for ever on hosts that keep dying.
const MaxTargetLosses = 3

// MaxSourceLosses is how many failed steps of one VM during which the
// management connection to its own host dropped are not counted as
// attempts: the step waited for the connection to return and the
// inventory showed the VM still there. Bounded, so that a host whose
// connection drops at every migration does not hold an evacuation for
// ever.
const MaxSourceLosses = 3

// OpItem is one VM's step in an operation.
type OpItem struct {
	VM          string `json:"vm"`
	Name        string `json:"name"`
	Action      string `json:"action"`
	From        string `json:"from"`
	MemoryBytes int64  `json:"memory_bytes"`
	Priority    int    `json:"priority"`
	// Planned is the target a planner chose ahead (balancing); the step
	// goes there when it still can, elsewhere on a retry.
	Planned string `json:"planned,omitempty"`
	Target  string `json:"target,omitempty"`
	// NewID is, for a recreated VM, the ID of the new copy.
	NewID string `json:"new_id,omitempty"`
	// WasRunning is, for a VM waiting for its host (ActionAwaitHost),
	// whether it ran before the crash: it runs again when the host returns.
	WasRunning bool      `json:"was_running,omitempty"`
	State      ItemState `json:"state"`
	Attempts   int       `json:"attempts"`
	// TargetLosses counts the failures not counted as attempts because
	// their target host was lost (MaxTargetLosses).
	TargetLosses int `json:"target_losses,omitempty"`
	// SourceLosses counts the failures not counted as attempts because the
	// connection to the VM's host dropped (MaxSourceLosses).
	SourceLosses int       `json:"source_losses,omitempty"`
	Tried        []string  `json:"tried,omitempty"`
	Error        string    `json:"error,omitempty"`
	Started      time.Time `json:"started,omitempty"`
	Finished     time.Time `json:"finished,omitempty"`
}

// Operation is an evacuation, an exit from maintenance or a migration,
// with every VM's step. It lives in raft: a new leader resumes it.
type Operation struct {
	ID   string `json:"id"`
	Kind OpKind `json:"kind"`
	Host string `json:"host,omitempty"`
	// Parent is, for an exit, the evacuation it undoes.
	Parent     string    `json:"parent,omitempty"`
	State      OpState   `json:"state"`
	Migrate    string    `json:"migrate,omitempty"`
	TargetHost string    `json:"target_host,omitempty"`
	Actor      string    `json:"actor"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
	// Progress is when an item last finished (or the start): the
	// no-progress deadline counts from it.
	Progress  time.Time `json:"progress"`
	Error     string    `json:"error,omitempty"`
	Cancelled bool      `json:"cancelled,omitempty"`
	// MaxAttempts per VM, fixed when the operation starts (0: MaxAttempts).
	MaxAttempts int `json:"max_attempts,omitempty"`
	// Detected is, for a recovery, when the host's failure was first seen:
	// the recovery's duration counts from it.
	Detected time.Time `json:"detected,omitempty"`
	Items    []OpItem  `json:"items"`
}

// Attempts is how often each VM of o is tried.
func (o *Operation) Attempts() int {
	if o.MaxAttempts > 0 {
		return o.MaxAttempts
	}
	return MaxAttempts
}

// Item returns the index of vm's item, or -1.
func (o *Operation) Item(vm string) int {
	for i := range o.Items {
		if o.Items[i].VM == vm {
			return i
		}
	}
	return -1
}

// Counts sums items by state.
func (o *Operation) Counts() map[ItemState]int {
	c := map[ItemState]int{}
	for _, it := range o.Items {
		c[it.State]++
	}
	return c
}

func (o *Operation) clone() *Operation {
	c := *o
	c.Items = make([]OpItem, len(o.Items))
	copy(c.Items, o.Items)
	for i := range c.Items {
		c.Items[i].Tried = append([]string(nil), o.Items[i].Tried...)
	}
	return &c
}

// SortedOperations lists operations, newest first.
func (s *State) SortedOperations() []*Operation {
	out := make([]*Operation, 0, len(s.Operations))
	for _, o := range s.Operations {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID > out[j].ID
	})
	return out
}

// ActiveOperationOn returns the running operation that holds host, if any.
func (s *State) ActiveOperationOn(host string) *Operation {
	h := s.Hosts[host]
	if h == nil || h.Operation == "" {
		return nil
	}
	if o := s.Operations[h.Operation]; o != nil && !o.State.Terminal() {
		return o
	}
	return nil
}

// transitions lists the legal maintenance state changes.
var transitions = map[MaintenanceState][]MaintenanceState{
	MaintenanceOff:       {MaintenanceEntering},
	MaintenanceEntering:  {MaintenanceOn, MaintenanceError, MaintenanceCancelled},
	MaintenanceError:     {MaintenanceEntering, MaintenanceExiting},
	MaintenanceCancelled: {MaintenanceEntering, MaintenanceExiting},
	MaintenanceOn:        {MaintenanceExiting},
	MaintenanceExiting:   {MaintenanceOff},
}

// CanTransition reports whether a host may go from one maintenance state to another.
func CanTransition(from, to MaintenanceState) bool {
	for _, t := range transitions[from] {
		if t == to {
			return true
		}
	}
	return false
}

// opsRetention is how many ended operations the state keeps.
const opsRetention = 500

func (s *State) trimOperations() {
	var ended []*Operation
	for _, o := range s.Operations {
		if o.State.Terminal() {
			ended = append(ended, o)
		}
	}
	if len(ended) <= opsRetention {
		return
	}
	// Deterministic on every server: ties in time are broken by id.
	sort.Slice(ended, func(i, j int) bool {
		if !ended[i].Updated.Equal(ended[j].Updated) {
			return ended[i].Updated.Before(ended[j].Updated)
		}
		return ended[i].ID < ended[j].ID
	})
	for _, o := range ended[:len(ended)-opsRetention] {
		delete(s.Operations, o.ID)
	}
}

func (s *State) setMaintenance(host string, to MaintenanceState, op string) *ApplyError {
	h := s.Hosts[host]
	if h == nil {
		return notFound("host", "host %q not found", host)
	}
	if !CanTransition(h.Maintenance, to) {
		return conflict("status", "host %s: maintenance cannot go from %s to %s", host, h.Maintenance, to)
	}
	nh := *h
	nh.Maintenance, nh.Operation = to, op
	switch to {
	case MaintenanceEntering, MaintenanceOn, MaintenanceError, MaintenanceCancelled:
		nh.Admin = InMaintenance
	case MaintenanceOff:
		nh.Admin = Available
		nh.AdminReason = ""
	}
	s.Hosts[host] = &nh
	return nil
}

func opError(format string, args ...any) *ApplyError {
	return &ApplyError{Code: 409, Field: "operation", Msg: fmt.Sprintf(format, args...)}
}

// RunningOn counts the VMs running on host (stale copies are records of
// their own, never among them).
func (s *State) RunningOn(host string) int {
	n := 0
	for _, vm := range s.VMs {
		if vm.Host == host && vm.Power == PoweredOn {
			n++
		}
	}
	return n
}

// MaintenanceNote says what a host in maintenance holds: a host is never
// called empty, or ready to power off, while a VM runs on it (maintenance
// with --migrate none closes a host and moves nothing). Empty for a host
// not in maintenance.
//
// stale counts the stale copies still on the host: their power is unknown
// until they are destroyed, so the host is not empty either.
func MaintenanceNote(host string, m MaintenanceState, running, stale int) string {
	switch {
	case m != MaintenanceOn:
		return ""
	case running > 0 && stale > 0:
		return fmt.Sprintf("host %s is in maintenance, %d VMs still running and %d stale copies not yet destroyed", host, running, stale)
	case running > 0:
		return fmt.Sprintf("host %s is in maintenance, %d VMs still running", host, running)
	case stale > 0:
		return fmt.Sprintf("host %s is in maintenance, %d stale copies not yet destroyed", host, stale)
	}
	return fmt.Sprintf("host %s is in maintenance: empty and ready", host)
}

func (s *State) maintenanceOnMessage(host string) string {
	return MaintenanceNote(host, MaintenanceOn, s.RunningOn(host), len(s.StaleOn(host)))
}

// busyMaintenance returns, for the hosts in maintenance (on) among hosts,
// those with VMs still running: noteEmptied tells when they empty.
func (s *State) busyMaintenance(hosts map[string]bool) map[string]bool {
	var out map[string]bool
	for name := range hosts {
		if h := s.Hosts[name]; h != nil && h.Maintenance == MaintenanceOn && s.RunningOn(name)+len(s.StaleOn(name)) > 0 {
			if out == nil {
				out = map[string]bool{}
			}
			out[name] = true
		}
	}
	return out
}

// noteEmptied logs, for each host of busy (see busyMaintenance) that no
// longer runs a VM, that it is now empty and ready.
func (s *State) noteEmptied(busy map[string]bool, t time.Time) {
	names := make([]string, 0, len(busy))
	for name := range busy {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if h := s.Hosts[name]; h != nil && h.Maintenance == MaintenanceOn && s.RunningOn(name) == 0 && len(s.StaleOn(name)) == 0 {
			s.appendEvents(Event{Time: t, Type: "maintenance.empty", Actor: "herd", Host: name,
				Message: MaintenanceNote(name, MaintenanceOn, 0, 0)})
		}
	}
}
