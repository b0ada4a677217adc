package cluster

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// FSM is the raft state machine. Apply only decodes a command and changes
// state: no I/O, no clock, no driver.
type FSM struct {
	mu    sync.RWMutex
	state *State
	log   *slog.Logger
	// watchers are told the index of every applied entry.
	watchMu  sync.Mutex
	watchers []chan<- uint64
}

// NewFSM returns an FSM over an empty state.
func NewFSM(log *slog.Logger) *FSM {
	if log == nil {
		log = slog.Default()
	}
	s := NewState()
	s.track()
	return &FSM{state: s, log: log}
}

// Read calls fn with the live state under a read lock. fn must not keep
// references past its return unless they are immutable values.
func (f *FSM) Read(fn func(s *State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.state)
}

// State returns a consistent copy of the state to read without locks.
func (f *FSM) State() *State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Snapshot()
}

// Policy returns the policy in force (nil before one is applied) without
// copying the state.
func (f *FSM) Policy() *Policy {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Policy
}

// Index is the raft index of the last entry applied.
func (f *FSM) Index() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Index
}

// Operation returns one operation (nil when unknown) without copying the state.
func (f *FSM) Operation(id string) *Operation {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Operations[id]
}

// Watch registers ch to receive the index of each applied entry (dropped
// when ch is full).
func (f *FSM) Watch(ch chan<- uint64) {
	f.watchMu.Lock()
	f.watchers = append(f.watchers, ch)
	f.watchMu.Unlock()
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	cmd, err := Decode(l.Data)
	if err != nil {
		if len(l.Data) > 0 && CommandType(l.Data[0])&IgnoreUnknownFlag != 0 {
			f.log.Warn("skipping unknown command", "index", l.Index, "type", l.Data[0])
			return nil
		}
		// An entry we cannot read would make this server diverge: stop.
		panic(fmt.Sprintf("raft log entry %d: %v", l.Index, err))
	}
	f.mu.Lock()
	f.state.recountUsage()
	res := f.state.apply(cmd, l.Index)
	f.state.Index = l.Index
	f.state.verifyUsage()
	f.mu.Unlock()
	f.notify(l.Index)
	return res
}

func (f *FSM) notify(index uint64) {
	f.watchMu.Lock()
	defer f.watchMu.Unlock()
	for _, ch := range f.watchers {
		select {
		case ch <- index:
		default:
		}
	}
}

// Apply changes s by cmd as the FSM would at raft index. It returns nil or
// an *ApplyError; on an error nothing changed. Outside the FSM it serves
// tests, benchmarks and tools that build states from commands.
func (s *State) Apply(cmd Command, index uint64) error {
	s.recountUsage()
	if err, ok := s.apply(cmd, index).(error); ok && err != nil {
		return err
	}
	s.verifyUsage()
	return nil
}

// apply changes s by cmd. It returns nil or an *ApplyError; on an error
// nothing changed.
func (s *State) apply(cmd Command, index uint64) any {
	switch c := cmd.(type) {
	case *InventoryDiff:
		s.applyInventory(c)
	case *AppendEvents:
		s.appendEvents(c.Events...)
	case *SetHostStatus:
		h, ok := s.Hosts[c.Host]
		if !ok {
			return notFound("host", "host %q not found", c.Host)
		}
		if !c.Status.Valid() {
			return &ApplyError{Code: 400, Field: "status", Msg: fmt.Sprintf("unknown status %q", c.Status)}
		}
		if c.Status == Available && !c.ConfirmFenced {
			if h.Health == HealthFenced {
				return conflict("status", "host %s is fenced: it returns as NOT_ACCEPTING when it answers again, and can be made AVAILABLE once its stale VM copies are gone", c.Host)
			}
			if stale := s.StaleOn(c.Host); len(stale) > 0 {
				return conflict("status", "host %s still holds %d stale VM copies (recreated elsewhere, e.g. %s); they are destroyed first", c.Host, len(stale), stale[0].Name)
			}
		}
		if c.ConfirmFenced && c.Status != Offline {
			return &ApplyError{Code: 400, Field: "confirm_fenced", Msg: "confirm_fenced goes with status OFFLINE"}
		}
		nh := *h
		nh.Admin, nh.AdminReason = c.Status, c.Reason
		if c.ConfirmFenced {
			nh.Health, nh.FencedBy, nh.FenceFailure = HealthFenced, FenceOperator, ""
		}
		s.Hosts[c.Host] = &nh
		s.appendEvents(c.Event)
	case *SetHostHealth:
		h, ok := s.Hosts[c.Host]
		if !ok {
			return notFound("host", "host %q not found", c.Host)
		}
		nh := *h
		nh.Health = c.Health
		switch c.Health {
		case HealthDead:
			if h.Health != HealthDead {
				nh.DownSince = c.Event.Time
			}
		case HealthFenced:
		default:
			nh.DownSince, nh.FenceFailure = time.Time{}, ""
		}
		s.Hosts[c.Host] = &nh
		s.appendEvents(c.Event)
	case *RegisterServer:
		sv := c.Server
		s.Servers[sv.ID] = &sv
	case *StartOperation, *StartItem, *FinishItem, *CancelOperation, *RetryOperation, *FailOperation:
		if err := s.applyOperation(cmd, index); err != nil {
			return err
		}
	case *HostFenced, *HostLease, *HostReturned, *ForgetVMs:
		if err := s.applyRecovery(cmd); err != nil {
			return err
		}
	case *CreateRollout, *RolloutStep, *RolloutControl, *RolloutContinue:
		if err := s.applyRollout(cmd); err != nil {
			return err
		}
	case *SetSilence, *ClearSilence:
		s.applySilence(cmd)
	case *SetPolicy:
		if err := s.setPolicy(c); err != nil {
			return err
		}
	case *SetEventRetention:
		if c.Max > 0 {
			s.EventRetention = c.Max
			s.trimEvents()
		}
	}
	return nil
}

func (s *State) applyInventory(d *InventoryDiff) {
	// A VM an operation step changed after the inventory was read keeps
	// what the step recorded: the read may predate the step's effect.
	newer := func(id string) bool {
		old := s.VMs[id]
		return old != nil && d.ReadIndex > 0 && old.StepIndex > d.ReadIndex
	}
	var kept map[string]bool
	left := map[string]bool{}
	for _, vm := range d.UpsertVMs {
		if old := s.VMs[vm.ID]; old != nil {
			left[old.Host] = true
		}
	}
	for _, id := range d.RemoveVMs {
		if old := s.VMs[id]; old != nil {
			left[old.Host] = true
		}
	}
	busy := s.busyMaintenance(left)
	for _, h := range d.UpsertHosts {
		nh := h
		nh.Driver = d.Driver
		if old, ok := s.Hosts[h.Name]; ok {
			// Herd's own fields stay as they are.
			nh.Admin, nh.AdminReason = old.Admin, old.AdminReason
			nh.Maintenance, nh.Operation = old.Maintenance, old.Operation
			nh.Health = old.Health
			nh.FencedBy, nh.FenceFailure, nh.LeaseTTL, nh.DownSince = old.FencedBy, old.FenceFailure, old.LeaseTTL, old.DownSince
			if nh.Labels == nil {
				nh.Labels = old.Labels
			}
		} else {
			if nh.Admin == "" {
				nh.Admin = Available
			}
			if nh.Maintenance == "" {
				nh.Maintenance = MaintenanceOff
			}
			if nh.Health == "" {
				nh.Health = HealthUnknown
			}
		}
		s.Hosts[h.Name] = &nh
	}
	for _, name := range d.RemoveHosts {
		delete(s.Hosts, name)
	}
	for _, vm := range d.UpsertVMs {
		if newer(vm.ID) {
			kept = keep(kept, vm.ID)
			continue
		}
		nv := vm
		nv.Driver = d.Driver
		if old, ok := s.VMs[vm.ID]; ok {
			nv.Priority, nv.StepIndex = old.Priority, old.StepIndex
			nv.RecreatedFrom = old.RecreatedFrom
			if nv.Definition.IsZero() {
				nv.Definition = old.Definition
			}
		}
		s.setVM(vm.ID, &nv)
	}
	for _, id := range d.RemoveVMs {
		if newer(id) {
			kept = keep(kept, id)
			continue
		}
		s.deleteVM(id)
	}
	events := d.Events
	if kept != nil {
		events = make([]Event, 0, len(d.Events))
		for _, e := range d.Events {
			if !kept[e.VM] {
				events = append(events, e)
			}
		}
	}
	s.appendEvents(events...)
	var t time.Time
	if n := len(d.Events); n > 0 {
		t = d.Events[n-1].Time
	}
	s.noteEmptied(busy, t)
}

// keep adds id to the set m, making it when nil.
func keep(m map[string]bool, id string) map[string]bool {
	if m == nil {
		m = map[string]bool{}
	}
	m[id] = true
	return m
}

func (s *State) appendEvents(events ...Event) {
	for _, e := range events {
		if e.Type == "" && e.Message == "" {
			continue
		}
		// Keep the log in time order even when leaders' clocks differ.
		if n := len(s.Events); n > 0 && e.Time.Before(s.Events[n-1].Time) {
			e.Time = s.Events[n-1].Time
		}
		e.Seq = s.NextEventSeq
		s.NextEventSeq++
		s.Events = append(s.Events, e)
	}
	s.trimEvents()
}

func (s *State) trimEvents() {
	max := s.EventRetention
	if max <= 0 {
		max = DefaultEventRetention
	}
	// Trim in chunks so appends stay amortised O(1).
	if len(s.Events) > max+max/8 {
		kept := make([]Event, max, max+max/4+1)
		copy(kept, s.Events[len(s.Events)-max:])
		s.Events = kept
	}
}

// Snapshot implements raft.FSM: the state is copied under the lock and
// written out by Persist without it.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &fsmSnapshot{state: f.state.Snapshot()}, nil
}

// Restore implements raft.FSM.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := ReadState(rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	s.track()
	f.mu.Lock()
	f.state = s
	f.mu.Unlock()
	f.notify(s.Index)
	return nil
}

type fsmSnapshot struct{ state *State }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := WriteState(sink, s.state); err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
