package cluster

import (
	"fmt"
	"time"
)

// Recovery commands: fencing results, agent leases, a fenced host coming
// back, and stale copies removed.
const (
	CmdHostFenced   CommandType = 16
	CmdHostLease    CommandType = 17
	CmdHostReturned CommandType = 18
	CmdForgetVMs    CommandType = 19
)

// FenceOperator is the FencedBy of a host an operator confirmed fenced.
const FenceOperator = "operator"

// OpRecover recreates the VMs of a fenced host elsewhere.
const OpRecover OpKind = "recover"

// Recovery item actions.
const (
	// ActionRecreate defines the VM on another host from its stored
	// definition and starts it.
	ActionRecreate = "recreate"
	// ActionRegister defines a VM that was shut off on another host,
	// without starting it.
	ActionRegister = "register"
	// ActionAwaitHost is a VM the policy keeps from being recreated
	// elsewhere (recovery.exclude_vm_groups): it waits for its host, and
	// runs there again when the host returns (as every VM of a recovery
	// still on its host then does).
	ActionAwaitHost = "await-host"
)

// UnlimitedAttempts is the MaxAttempts of a recovery: it never gives up.
const UnlimitedAttempts = 1 << 30

// HostFenced records how the fencing chain ended for a dead host. OK makes
// the host fenced (and OFFLINE): its VMs may be recreated. A failure is
// recorded with its reason; the host stays dead and nothing is recreated.
type HostFenced struct {
	Host   string `json:"host"`
	Method string `json:"method,omitempty"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Event  Event  `json:"event"`
}

func (*HostFenced) Type() CommandType { return CmdHostFenced }

// HostLease arms (TTL > 0) or disarms lease fencing for a host: armed, an
// agent on the host holds a lease of TTL and stops the host's VMs when it
// cannot renew it. Renewals themselves are not logged; a new leader counts
// every armed lease as renewed when it took over.
type HostLease struct {
	Host  string        `json:"host"`
	TTL   time.Duration `json:"ttl"`
	Event Event         `json:"event"`
}

func (*HostLease) Type() CommandType { return CmdHostLease }

// HostReturned records that a fenced host answers again: it is alive and
// NOT_ACCEPTING until its stale copies are gone and an operator opens it.
type HostReturned struct {
	Host  string `json:"host"`
	Event Event  `json:"event"`
}

func (*HostReturned) Type() CommandType { return CmdHostReturned }

// ForgetVMs removes the stale copies on Host with the given driver ids,
// once they were destroyed on a host that came back. Entries written before
// stale copies were records of their own carry no Host: they remove the VM
// records and stale copies with those ids.
type ForgetVMs struct {
	Host  string   `json:"host,omitempty"`
	IDs   []string `json:"ids"`
	Event Event    `json:"event"`
}

func (*ForgetVMs) Type() CommandType { return CmdForgetVMs }

func (s *State) applyRecovery(cmd Command) *ApplyError {
	switch c := cmd.(type) {
	case *HostFenced:
		h, ok := s.Hosts[c.Host]
		if !ok {
			return notFound("host", "host %q not found", c.Host)
		}
		nh := *h
		if c.OK {
			if h.Health != HealthDead && h.Health != HealthFenced {
				return conflict("health", "host %s is %s, not dead: it is not fenced", c.Host, h.Health)
			}
			nh.Health, nh.FencedBy, nh.FenceFailure = HealthFenced, c.Method, ""
			nh.Admin, nh.AdminReason = Offline, "fenced by "+c.Method
		} else {
			nh.FenceFailure = c.Error
		}
		s.Hosts[c.Host] = &nh
		s.appendEvents(c.Event)
	case *HostLease:
		h, ok := s.Hosts[c.Host]
		if !ok {
			return notFound("host", "host %q not found", c.Host)
		}
		if c.TTL < 0 {
			return &ApplyError{Code: 400, Field: "ttl", Msg: "a lease TTL cannot be negative"}
		}
		nh := *h
		nh.LeaseTTL = c.TTL
		s.Hosts[c.Host] = &nh
		s.appendEvents(c.Event)
	case *HostReturned:
		h, ok := s.Hosts[c.Host]
		if !ok {
			return notFound("host", "host %q not found", c.Host)
		}
		if h.Health != HealthFenced {
			return conflict("health", "host %s is %s, not fenced", c.Host, h.Health)
		}
		nh := *h
		nh.Health, nh.FencedBy, nh.FenceFailure, nh.DownSince = HealthAlive, "", "", time.Time{}
		if nh.Admin == Offline || nh.Admin == Available {
			nh.Admin, nh.AdminReason = NotAccepting, "returned after being fenced"
		}
		s.Hosts[c.Host] = &nh
		s.appendEvents(c.Event)
	case *ForgetVMs:
		for _, id := range c.IDs {
			if c.Host != "" {
				delete(s.StaleCopies, StaleKey(c.Host, id))
				continue
			}
			if vm := s.VMs[id]; vm != nil {
				delete(s.StaleCopies, StaleKey(vm.Host, id))
			}
			s.deleteVM(id)
		}
		s.appendEvents(c.Event)
	}
	return nil
}

// startRecovery checks that a recovery may start for its host: the host is
// fenced and no other operation holds it.
func (s *State) startRecovery(op *Operation) *ApplyError {
	h := s.Hosts[op.Host]
	if h == nil {
		return notFound("host", "host %q not found", op.Host)
	}
	if h.Health != HealthFenced {
		return conflict("health", "host %s is %s: only a fenced host's VMs are recreated", op.Host, h.Health)
	}
	if o := s.ActiveOperationOn(op.Host); o != nil && o.Kind == OpRecover {
		return opError("host %s is already being recovered by %s", op.Host, o.ID)
	}
	nh := *h
	nh.Operation = op.ID
	s.Hosts[op.Host] = &nh
	return nil
}

// recreated records a finished recreation: the VM is now on the target —
// the same VM, under the same id when the driver kept its identity — and
// what its fenced host still holds of it is a stale copy there.
func (s *State) recreated(op *Operation, it *OpItem) {
	old, ok := s.VMs[it.VM]
	if !ok || it.Target == "" {
		return
	}
	id := it.NewID
	if id == "" {
		id = it.VM
	}
	from := it.From
	if from == "" {
		from = op.Host
	}
	if from == it.Target {
		// Its own host returned: the VM is where it was, with the power
		// it had before the crash.
		nv := *old
		if it.Action == ActionRecreate || it.WasRunning {
			nv.Power = PoweredOn
		}
		s.setVM(it.VM, &nv)
		return
	}
	{
		// Keyed by where the leftover is, not where the record is: an
		// inventory may already show the VM on the target.
		s.StaleCopies[StaleKey(from, it.VM)] = &StaleCopy{VM: id, ID: it.VM, Name: old.Name, Host: from, Driver: old.Driver, Since: it.Finished}
	}
	nv := *old
	nv.ID, nv.Host = id, it.Target
	nv.Power = PoweredOff
	if it.Action == ActionRecreate {
		nv.Power = PoweredOn
	}
	if id != it.VM {
		nv.RecreatedFrom = it.VM
		if cur, ok := s.VMs[id]; ok && cur.Name != "" {
			nv.Name = cur.Name // as the hypervisor named it
		}
		s.deleteVM(it.VM)
	}
	s.setVM(id, &nv)
}

// RecoveryWord describes a recovery's end for its event.
func recoveryEnded(op *Operation, t time.Time) Event {
	c := op.Counts()
	back := 0
	for _, it := range op.Items {
		if it.State == ItemDone && it.Target != "" && it.Target == it.From {
			back++
		}
	}
	return Event{Time: t, Type: "recovery." + string(op.State), Actor: "herd", Host: op.Host, Operation: op.ID,
		Message: fmt.Sprintf("recovery of host %s %s: %d VMs recreated or registered elsewhere, %d back on the host when it returned, %d failed, %d cancelled",
			op.Host, op.State, c[ItemDone]-back, back, c[ItemFailed], c[ItemCancelled])}
}
