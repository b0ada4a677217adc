// Package drivers defines what Herd needs from a hypervisor manager. Drivers
// know nothing of Herd's state: they report inventory and carry out actions.
package drivers

import (
	"context"
	"errors"
)

// Error kinds every driver maps its failures to, so that controllers can
// decide what to do (retry elsewhere, fail, wait). Match with errors.Is.
var (
	ErrNotFound     = errors.New("not found")
	ErrNotSupported = errors.New("not supported")
	ErrTimeout      = errors.New("timed out")
	ErrUnreachable  = errors.New("unreachable")
)

// PowerState of a VM as drivers report it.
type PowerState string

const (
	PoweredOn  PowerState = "running"
	PoweredOff PowerState = "stopped"
	Suspended  PowerState = "suspended"
)

// Connection state of a host as the hypervisor manager sees it.
type Connection string

const (
	Connected     Connection = "connected"
	Disconnected  Connection = "disconnected"
	NotResponding Connection = "notResponding"
)

// MigrationKind says how a VM moves.
type MigrationKind string

const (
	// Live moves a running VM without stopping it.
	Live MigrationKind = "live"
	// Offline moves a VM that is shut off.
	Offline MigrationKind = "offline"
)

// Host is one hypervisor host.
type Host struct {
	Name string
	// Group is the manager's grouping (a vSphere cluster); VMs move only
	// inside one group.
	Group         string
	MemoryBytes   int64
	CPUs          int
	CPUMHz        int64
	Connection    Connection
	InMaintenance bool
}

// VM is one virtual machine.
type VM struct {
	// ID is stable across renames and migrations.
	ID          string
	Name        string
	Host        string
	MemoryBytes int64
	VCPUs       int
	Power       PowerState
	// Unmovable says why the VM cannot migrate; empty when it can.
	Unmovable string
	// Autostart: the host starts the VM when it boots (libvirt).
	Autostart bool
	// Definition is what Recreate needs to bring the VM back elsewhere.
	Definition []byte
}

// Inventory is everything a driver manages.
type Inventory struct {
	Hosts []Host
	VMs   []VM
}

// Copies returns every host's copy of VM id: more than one while a live
// migration is under way, or when a VM is defined on several hosts.
func (inv *Inventory) Copies(id string) []VM {
	var out []VM
	for _, v := range inv.VMs {
		if v.ID == id {
			out = append(out, v)
		}
	}
	return out
}

// Driver is one hypervisor manager (a vCenter, a set of libvirt hosts).
// Every call honours ctx's deadline.
type Driver interface {
	// Inventory lists hosts and VMs.
	Inventory(ctx context.Context) (*Inventory, error)
	// Migrate moves VM id to host target, live or offline.
	Migrate(ctx context.Context, id, target string, kind MigrationKind) error
	// PowerOn starts a VM.
	PowerOn(ctx context.Context, id string) error
	// PowerOff stops a VM at once.
	PowerOff(ctx context.Context, id string) error
	// Shutdown asks the guest to stop, and powers it off when ctx's
	// deadline is near.
	Shutdown(ctx context.Context, id string) error
	// Recreate defines a VM on host from a stored Definition, powered off,
	// and returns its ID. The VM keeps its identity: its ID, name, hardware
	// UUIDs and MAC addresses are the original's, so that the guest and
	// everything keyed by them see the same machine.
	Recreate(ctx context.Context, definition []byte, host string) (string, error)
	// Destroy powers off and removes the copy of VM id on host (a stale
	// copy on a host that came back) from that host or its manager; its
	// disk files are kept. A recovered VM keeps its id, so the host says
	// which copy goes; ErrNotFound when host holds none.
	Destroy(ctx context.Context, id, host string) error
	// ProbeHost asks the manager how a host is.
	ProbeHost(ctx context.Context, host string) (Connection, error)
	// Close releases the driver's connections.
	Close() error
}

// WithKind adds an error kind (ErrNotFound, ErrTimeout, …) to err, keeping
// its message, so that errors.Is matches both. A nil kind, or one err
// already matches, leaves err as it is.
func WithKind(err, kind error) error {
	if err == nil || kind == nil || errors.Is(err, kind) {
		return err
	}
	return &kindError{err: err, kind: kind}
}

type kindError struct {
	err  error
	kind error
}

func (e *kindError) Error() string   { return e.err.Error() + " (" + e.kind.Error() + ")" }
func (e *kindError) Unwrap() []error { return []error{e.err, e.kind} }
