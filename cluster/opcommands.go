package cluster

import (
	"fmt"
	"time"
)

// Operation commands. A controller records each step before it acts
// (StartItem) and after (FinishItem), so a new leader knows exactly which
// moves finished and which were in flight.
const (
	CmdStartOperation  CommandType = 10
	CmdStartItem       CommandType = 11
	CmdFinishItem      CommandType = 12
	CmdCancelOperation CommandType = 13
	CmdRetryOperation  CommandType = 14
	CmdFailOperation   CommandType = 15
)

// StartOperation records a new operation. An evacuation moves its host from
// off to entering; an exit moves it from on or error to exiting. An
// operation with no items ends at once.
type StartOperation struct {
	Op    Operation `json:"op"`
	Event Event     `json:"event"`
}

func (*StartOperation) Type() CommandType { return CmdStartOperation }

// StartItem records that a VM's step starts now, toward Target.
type StartItem struct {
	Op     string    `json:"op"`
	VM     string    `json:"vm"`
	Target string    `json:"target,omitempty"`
	Time   time.Time `json:"time"`
	Event  Event     `json:"event"`
}

func (*StartItem) Type() CommandType { return CmdStartItem }

// FinishItem records how a VM's step ended. A failure is tried again until
// MaxAttempts; Requeue puts a step that never ran (a leader died before it
// acted) back without counting an attempt. TargetLost, on a failure, says
// the step's target host was lost meanwhile: up to MaxTargetLosses such
// failures are not counted either, and the next try goes elsewhere.
// SourceLost says the connection to the VM's own host dropped during the
// step (and is back, and the inventory shows the VM did not move): up to
// MaxSourceLosses such failures are not counted, and the target stays a
// candidate.
type FinishItem struct {
	Op         string `json:"op"`
	VM         string `json:"vm"`
	OK         bool   `json:"ok"`
	Requeue    bool   `json:"requeue,omitempty"`
	TargetLost bool   `json:"target_lost,omitempty"`
	SourceLost bool   `json:"source_lost,omitempty"`
	// NewID is the ID of a recreated VM's new copy.
	NewID string    `json:"new_id,omitempty"`
	Error string    `json:"error,omitempty"`
	Time  time.Time `json:"time"`
	Event Event     `json:"event"`
}

func (*FinishItem) Type() CommandType { return CmdFinishItem }

// CancelOperation stops an operation: steps in flight finish, nothing new
// starts, and an evacuated host stays closed.
type CancelOperation struct {
	Op    string    `json:"op"`
	Time  time.Time `json:"time"`
	Event Event     `json:"event"`
}

func (*CancelOperation) Type() CommandType { return CmdCancelOperation }

// RetryOperation runs a failed or cancelled evacuation again: its failed
// and cancelled steps start over with fresh attempts.
type RetryOperation struct {
	Op    string    `json:"op"`
	Time  time.Time `json:"time"`
	Event Event     `json:"event"`
}

func (*RetryOperation) Type() CommandType { return CmdRetryOperation }

// FailOperation ends an operation that cannot go on (no progress within
// its deadline): nothing new starts and it fails once its steps in flight end.
type FailOperation struct {
	Op    string    `json:"op"`
	Error string    `json:"error"`
	Time  time.Time `json:"time"`
	Event Event     `json:"event"`
}

func (*FailOperation) Type() CommandType { return CmdFailOperation }

func (s *State) applyOperation(cmd Command, index uint64) *ApplyError {
	switch c := cmd.(type) {
	case *StartOperation:
		return s.startOperation(c)
	case *StartItem:
		op, i, err := s.opItem(c.Op, c.VM)
		if err != nil {
			return err
		}
		if op.State != OpRunning || op.Cancelled {
			return opError("operation %s is %s: no new steps", op.ID, op.stateWord())
		}
		it := &op.Items[i]
		if it.State != ItemPending {
			return opError("operation %s: VM %s is %s, not pending", op.ID, it.Name, it.State)
		}
		it.State, it.Target, it.Started, it.Error = ItemRunning, c.Target, c.Time, ""
		it.Attempts++
		if c.Target != "" {
			it.Tried = append(it.Tried, c.Target)
		}
		op.Updated = c.Time
		s.Operations[op.ID] = op
		s.appendEvents(c.Event)
	case *FinishItem:
		op, i, err := s.opItem(c.Op, c.VM)
		if err != nil {
			return err
		}
		it := &op.Items[i]
		if it.State != ItemRunning {
			return opError("operation %s: VM %s is %s, not running", op.ID, it.Name, it.State)
		}
		it.Finished = c.Time
		switch {
		case c.Requeue:
			it.State, it.Attempts = ItemPending, it.Attempts-1
			if n := len(it.Tried); n > 0 {
				it.Tried = it.Tried[:n-1]
			}
		case c.OK:
			it.State, it.Error, it.NewID = ItemDone, "", c.NewID
			op.Progress = c.Time
			busy := s.busyMaintenance(map[string]bool{it.From: true})
			s.applyItemEffect(op, it)
			s.touch(index, it.VM, it.NewID)
			defer s.noteEmptied(busy, c.Time)
		case c.SourceLost && it.SourceLosses < MaxSourceLosses && !op.Cancelled:
			// The target was not at fault: it stays a candidate.
			it.State, it.Error = ItemPending, c.Error
			it.Attempts, it.SourceLosses = it.Attempts-1, it.SourceLosses+1
			if n := len(it.Tried); n > 0 {
				it.Tried = it.Tried[:n-1]
			}
		case c.TargetLost && it.TargetLosses < MaxTargetLosses && !op.Cancelled:
			// Tried keeps the lost host: the next try goes elsewhere.
			it.State, it.Error = ItemPending, c.Error
			it.Attempts, it.TargetLosses = it.Attempts-1, it.TargetLosses+1
		case it.Attempts < op.Attempts() && !op.Cancelled:
			it.State, it.Error = ItemPending, c.Error
			if c.NewID != "" {
				it.NewID = c.NewID // a copy was defined: the next attempt starts it
			}
		default:
			it.State, it.Error = ItemFailed, c.Error
		}
		op.Updated = c.Time
		s.Operations[op.ID] = op
		s.appendEvents(c.Event)
		s.settle(op, c.Time)
	case *CancelOperation:
		op, err := s.runningOp(c.Op)
		if err != nil {
			return err
		}
		if op.Cancelled {
			return nil // cancelled already: nothing more to stop, nothing to log
		}
		op.Cancelled = true
		s.stopPending(op, c.Time)
		s.appendEvents(c.Event)
		s.settle(op, c.Time)
	case *FailOperation:
		op, err := s.runningOp(c.Op)
		if err != nil {
			return err
		}
		op.Cancelled, op.Error = true, c.Error
		s.stopPending(op, c.Time)
		s.appendEvents(c.Event)
		s.settle(op, c.Time)
	case *RetryOperation:
		return s.retryOperation(c)
	}
	return nil
}

func (o *Operation) stateWord() string {
	if o.State == OpRunning && o.Cancelled {
		return "stopping"
	}
	return string(o.State)
}

func (s *State) startOperation(c *StartOperation) *ApplyError {
	op := c.Op.clone()
	if op.ID == "" || s.Operations[op.ID] != nil {
		return opError("operation id %q is empty or taken", op.ID)
	}
	switch op.Kind {
	case OpEvacuate:
		if err := s.setMaintenance(op.Host, MaintenanceEntering, op.ID); err != nil {
			return err
		}
	case OpExit:
		// Leaving maintenance opens the host: not while it is fenced or
		// holds stale copies of VMs recreated elsewhere.
		if h := s.Hosts[op.Host]; h != nil && h.Health == HealthFenced {
			return conflict("maintenance", "host %s is fenced: it can leave maintenance once it answers again and its stale VM copies are gone", op.Host)
		}
		if stale := s.StaleOn(op.Host); len(stale) > 0 {
			return conflict("maintenance", "host %s still holds %d stale VM copies (recreated elsewhere, e.g. %s); they are destroyed first", op.Host, len(stale), stale[0].Name)
		}
		if err := s.setMaintenance(op.Host, MaintenanceExiting, op.ID); err != nil {
			return err
		}
	case OpRecover:
		if err := s.startRecovery(op); err != nil {
			return err
		}
	case OpMigrate, OpBalance:
	default:
		return &ApplyError{Code: 400, Field: "kind", Msg: fmt.Sprintf("unknown operation kind %q", op.Kind)}
	}
	op.State, op.Updated, op.Progress = OpRunning, op.Created, op.Created
	for i := range op.Items {
		op.Items[i].State = ItemPending
	}
	s.Operations[op.ID] = op
	s.appendEvents(c.Event)
	s.settle(op, op.Created)
	s.trimOperations()
	return nil
}

func (s *State) retryOperation(c *RetryOperation) *ApplyError {
	o, ok := s.Operations[c.Op]
	if !ok {
		return notFound("operation", "operation %q not found", c.Op)
	}
	if o.Kind != OpEvacuate || (o.State != OpFailed && o.State != OpCancelled) {
		return opError("operation %s (%s) is %s: only a failed or cancelled evacuation can be retried", o.ID, o.Kind, o.State)
	}
	if h := s.Hosts[o.Host]; h == nil || h.Operation != o.ID {
		return opError("operation %s no longer holds host %s", o.ID, o.Host)
	}
	if err := s.setMaintenance(o.Host, MaintenanceEntering, o.ID); err != nil {
		return err
	}
	op := o.clone()
	op.State, op.Cancelled, op.Error, op.Updated, op.Progress = OpRunning, false, "", c.Time, c.Time
	for i := range op.Items {
		if it := &op.Items[i]; it.State == ItemFailed || it.State == ItemCancelled {
			it.State, it.Attempts, it.TargetLosses, it.SourceLosses, it.Tried, it.Error = ItemPending, 0, 0, 0, nil, ""
		}
	}
	s.Operations[op.ID] = op
	s.appendEvents(c.Event)
	s.settle(op, c.Time)
	return nil
}

func (s *State) opItem(id, vm string) (*Operation, int, *ApplyError) {
	o, ok := s.Operations[id]
	if !ok {
		return nil, 0, notFound("operation", "operation %q not found", id)
	}
	i := o.Item(vm)
	if i < 0 {
		return nil, 0, notFound("vm", "operation %s has no step for VM %q", id, vm)
	}
	return o.clone(), i, nil
}

func (s *State) runningOp(id string) (*Operation, *ApplyError) {
	o, ok := s.Operations[id]
	if !ok {
		return nil, notFound("operation", "operation %q not found", id)
	}
	if o.State != OpRunning {
		return nil, opError("operation %s is already %s", o.ID, o.State)
	}
	return o.clone(), nil
}

func (s *State) stopPending(op *Operation, t time.Time) {
	for i := range op.Items {
		if op.Items[i].State == ItemPending {
			op.Items[i].State = ItemCancelled
		}
	}
	op.Updated = t
	s.Operations[op.ID] = op
}

// touch records that an operation step changed the VMs ids at index: an
// inventory read against an older state leaves them as the step recorded.
func (s *State) touch(index uint64, ids ...string) {
	for _, id := range ids {
		if vm := s.VMs[id]; vm != nil && id != "" {
			nv := *vm
			nv.StepIndex = index
			s.setVM(id, &nv)
		}
	}
}

// applyItemEffect records what a finished step changed, so planners see it
// before the next inventory sync does.
func (s *State) applyItemEffect(op *Operation, it *OpItem) {
	vm, ok := s.VMs[it.VM]
	if !ok {
		return
	}
	nv := *vm
	switch it.Action {
	case ActionLiveMigrate, ActionOfflineMigrate:
		if it.Target != "" {
			nv.Host = it.Target
		}
	case ActionShutdown:
		nv.Power = PoweredOff
	case ActionPowerOn:
		nv.Power = PoweredOn
	case ActionRecreate, ActionRegister:
		s.recreated(op, it)
		return
	}
	s.setVM(it.VM, &nv)
}

// settle ends an operation whose steps have all ended, and moves its host on.
func (s *State) settle(op *Operation, t time.Time) {
	if op.State != OpRunning {
		return
	}
	var failed *OpItem
	for i := range op.Items {
		it := &op.Items[i]
		if !it.State.Terminal() {
			return
		}
		if it.State == ItemFailed && failed == nil {
			failed = it
		}
	}
	switch {
	case op.Error != "":
		op.State = OpFailed
	case failed != nil:
		op.State = OpFailed
		op.Error = fmt.Sprintf("VM %s could not %s after %d attempts: %s", failed.Name, failed.Action, failed.Attempts, failed.Error)
	case op.Cancelled:
		op.State = OpCancelled
	default:
		op.State = OpSucceeded
	}
	op.Updated = t
	s.Operations[op.ID] = op
	h := s.Hosts[op.Host]
	if h == nil || h.Operation != op.ID {
		return
	}
	switch op.Kind {
	case OpEvacuate:
		to, msg := MaintenanceOn, s.maintenanceOnMessage(op.Host)
		switch op.State {
		case OpSucceeded:
		case OpCancelled:
			// A deliberate cancel is not an error.
			to = MaintenanceCancelled
			msg = fmt.Sprintf("host %s stays closed: evacuation cancelled (retry the operation to go on, or disable maintenance)", op.Host)
		default:
			to = MaintenanceError
			msg = fmt.Sprintf("host %s maintenance error: evacuation %s: %s", op.Host, op.State, op.Error)
		}
		s.setMaintenance(op.Host, to, op.ID)
		s.appendEvents(Event{Time: t, Type: "maintenance." + string(to), Actor: "herd", Host: op.Host, Operation: op.ID, Message: msg})
	case OpRecover:
		nh := *h
		nh.Operation = ""
		s.Hosts[op.Host] = &nh
		s.appendEvents(recoveryEnded(op, t))
	case OpExit:
		s.setMaintenance(op.Host, MaintenanceOff, op.ID)
		s.appendEvents(Event{Time: t, Type: "maintenance.off", Actor: "herd", Host: op.Host, Operation: op.ID,
			Message: fmt.Sprintf("host %s left maintenance and is AVAILABLE", op.Host)})
	}
}
