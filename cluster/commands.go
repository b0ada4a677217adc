package cluster

import (
	"errors"
	"fmt"
	"time"
)

// CommandType is the first byte of every raft log entry Herd writes.
type CommandType uint8

// IgnoreUnknownFlag may be OR-ed into a command type: a server that does not
// know the type skips the entry instead of stopping. Use it for commands whose
// loss an older server can live with (an event, a statistic).
const IgnoreUnknownFlag CommandType = 0x80

const (
	CmdInventory    CommandType = 1
	CmdEvents       CommandType = 2
	CmdHostStatus   CommandType = 3
	CmdServer       CommandType = 4
	CmdHostHealth   CommandType = 5
	CmdEventsConfig CommandType = 6
)

// Command is a typed change to the state. Commands are plain data: Apply
// depends on nothing but the command and the state, so every server reaches
// the same state from the same log.
type Command interface {
	Type() CommandType
}

// Encode serialises a command: one type byte, then the command in msgpack
// (see encoding.go).
func Encode(c Command) ([]byte, error) {
	b, err := appendMsgpack([]byte{byte(c.Type())}, c)
	if err != nil {
		return nil, fmt.Errorf("encode command %d: %w", c.Type(), err)
	}
	return b, nil
}

// ErrUnknownCommand is returned for a command type this server does not know.
var ErrUnknownCommand = errors.New("unknown command type")

// Decode parses a log entry written by Encode, or by a server of the JSON
// era (one type byte, then JSON).
func Decode(b []byte) (Command, error) {
	if len(b) == 0 {
		return nil, errors.New("decode command: empty entry")
	}
	t := CommandType(b[0])
	c := newCommand(t &^ IgnoreUnknownFlag)
	if c == nil {
		return nil, fmt.Errorf("decode command type %d: %w", t, ErrUnknownCommand)
	}
	if err := decodeBody(b[1:], c); err != nil {
		return nil, fmt.Errorf("decode command type %d: %w", t, err)
	}
	return c, nil
}

// newCommand returns an empty command of type t, nil for a type this
// server does not know.
func newCommand(t CommandType) Command {
	switch t {
	case CmdInventory:
		return &InventoryDiff{}
	case CmdEvents:
		return &AppendEvents{}
	case CmdHostStatus:
		return &SetHostStatus{}
	case CmdServer:
		return &RegisterServer{}
	case CmdHostHealth:
		return &SetHostHealth{}
	case CmdEventsConfig:
		return &SetEventRetention{}
	case CmdStartOperation:
		return &StartOperation{}
	case CmdStartItem:
		return &StartItem{}
	case CmdFinishItem:
		return &FinishItem{}
	case CmdCancelOperation:
		return &CancelOperation{}
	case CmdRetryOperation:
		return &RetryOperation{}
	case CmdFailOperation:
		return &FailOperation{}
	case CmdSetPolicy:
		return &SetPolicy{}
	case CmdHostFenced:
		return &HostFenced{}
	case CmdHostLease:
		return &HostLease{}
	case CmdHostReturned:
		return &HostReturned{}
	case CmdForgetVMs:
		return &ForgetVMs{}
	case CmdCreateRollout:
		return &CreateRollout{}
	case CmdRolloutStep:
		return &RolloutStep{}
	case CmdRolloutControl:
		return &RolloutControl{}
	case CmdRolloutContinue:
		return &RolloutContinue{}
	case CmdSetSilence &^ IgnoreUnknownFlag:
		return &SetSilence{}
	case CmdClearSilence &^ IgnoreUnknownFlag:
		return &ClearSilence{}
	}
	return nil
}

// InventoryDiff records what inventory sync found changed at one driver:
// hosts and VMs that are new or different, and those that are gone. It
// carries the driver's facts only; Herd's own fields (admin status,
// maintenance, health, priority) are kept from the state.
type InventoryDiff struct {
	Driver      string   `json:"driver"`
	UpsertHosts []Host   `json:"upsert_hosts,omitempty"`
	RemoveHosts []string `json:"remove_hosts,omitempty"`
	UpsertVMs   []VM     `json:"upsert_vms,omitempty"`
	RemoveVMs   []string `json:"remove_vms,omitempty"`
	Events      []Event  `json:"events,omitempty"`
	// ReadIndex is the state index the inventory was read against (taken
	// before the driver was asked): a VM an operation step changed after
	// it keeps what the step recorded, and its events are dropped. 0 for
	// no such guard.
	ReadIndex uint64 `json:"read_index,omitempty"`
}

func (*InventoryDiff) Type() CommandType { return CmdInventory }

// Empty reports whether the diff changes nothing.
func (d *InventoryDiff) Empty() bool {
	return len(d.UpsertHosts) == 0 && len(d.RemoveHosts) == 0 && len(d.UpsertVMs) == 0 && len(d.RemoveVMs) == 0
}

// AppendEvents adds entries to the action log.
type AppendEvents struct {
	Events []Event `json:"events"`
}

func (*AppendEvents) Type() CommandType { return CmdEvents }

// SetHostStatus changes a host's admin status, as a person or policy asked.
type SetHostStatus struct {
	Host   string      `json:"host"`
	Status AdminStatus `json:"status"`
	Reason string      `json:"reason,omitempty"`
	// ConfirmFenced records an operator's word that the host is powered
	// off or isolated: its health becomes fenced.
	ConfirmFenced bool  `json:"confirm_fenced,omitempty"`
	Event         Event `json:"event"`
}

func (*SetHostStatus) Type() CommandType { return CmdHostStatus }

// SetHostHealth records the fused health of a host.
type SetHostHealth struct {
	Host   string `json:"host"`
	Health Health `json:"health"`
	Event  Event  `json:"event"`
}

func (*SetHostHealth) Type() CommandType { return CmdHostHealth }

// RegisterServer records a raft voter's addresses.
type RegisterServer struct {
	Server Server `json:"server"`
}

func (*RegisterServer) Type() CommandType { return CmdServer }

// SetEventRetention changes how many events the log keeps.
type SetEventRetention struct {
	Max int `json:"max"`
}

func (*SetEventRetention) Type() CommandType { return CmdEventsConfig }

// ApplyError is a command that was committed but refused by the state
// machine (unknown host, illegal transition). Nothing changed.
type ApplyError struct {
	Code  int // an HTTP status the API answers with
	Field string
	Msg   string
}

func (e *ApplyError) Error() string { return e.Msg }

func notFound(field, format string, args ...any) *ApplyError {
	return &ApplyError{Code: 404, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func conflict(field, format string, args ...any) *ApplyError {
	return &ApplyError{Code: 409, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// NewEvent is a convenience for building events at the leader.
func NewEvent(typ, actor, host, vm, msg string) Event {
	return Event{Time: time.Now().UTC(), Type: typ, Actor: actor, Host: host, VM: vm, Message: msg}
}
