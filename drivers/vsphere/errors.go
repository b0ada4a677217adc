package vsphere

import (
	"context"
	"errors"
	"net"
	"syscall"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/herd-project/herd/drivers"
)

// kindOf says which drivers error kind err belongs to, or nil.
func kindOf(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return drivers.ErrTimeout
	}
	var nf *find.NotFoundError
	if errors.As(err, &nf) {
		return drivers.ErrNotFound
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return drivers.ErrTimeout
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.ECONNRESET) {
		return drivers.ErrUnreachable
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	if errors.As(err, &dnsErr) || errors.As(err, &opErr) {
		return drivers.ErrUnreachable
	}
	kinds := []struct {
		fault types.BaseMethodFault
		kind  error
	}{
		{&types.ManagedObjectNotFound{}, drivers.ErrNotFound},
		{&types.NotFound{}, drivers.ErrNotFound},
		{&types.NotSupported{}, drivers.ErrNotSupported},
		{&types.NotImplemented{}, drivers.ErrNotSupported},
		{&types.HostNotConnected{}, drivers.ErrUnreachable},
		{&types.HostNotReachable{}, drivers.ErrUnreachable},
		{&types.HostCommunication{}, drivers.ErrUnreachable},
		{&types.Timedout{}, drivers.ErrTimeout},
	}
	for _, k := range kinds {
		if fault.Is(err, k.fault) {
			return k.kind
		}
	}
	return nil
}

// classify adds the drivers error kind to err when it has one.
func classify(err error) error {
	return drivers.WithKind(err, kindOf(err))
}

// isInvalidPowerState reports whether err says the VM is already in state.
func isInvalidPowerState(err error, state types.VirtualMachinePowerState) bool {
	var f *types.InvalidPowerState
	if _, ok := fault.As(err, &f); ok {
		return f.ExistingState == state
	}
	return false
}

// isNameTaken reports whether a VM creation failed because its name or
// files are already in use.
func isNameTaken(err error) bool {
	return fault.Is(err, &types.DuplicateName{}) || fault.Is(err, &types.FileAlreadyExists{})
}
