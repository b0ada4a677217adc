package libvirt

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/herd-project/herd/drivers"
)

// kindOf says which drivers error kind err belongs to, or nil.
func kindOf(err error) error {
	if err == nil {
		return nil
	}
	var lerr golibvirt.Error
	if errors.As(err, &lerr) {
		return codeKind(golibvirt.ErrorNumber(lerr.Code))
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return drivers.ErrTimeout
	case errors.Is(err, golibvirt.ErrUnsupported):
		return drivers.ErrNotSupported
	case errors.Is(err, golibvirt.ErrInterrupted), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.EPIPE):
		// The connection went away under the call (go-libvirt answers
		// EINVAL for a call on a closed socket).
		return drivers.ErrUnreachable
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return drivers.ErrTimeout
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.ENOENT) {
		return drivers.ErrUnreachable
	}
	return nil
}

// codeKind maps a libvirt error code (virErrorNumber).
func codeKind(code golibvirt.ErrorNumber) error {
	switch code {
	case golibvirt.ErrNoDomain:
		return drivers.ErrNotFound
	case golibvirt.ErrNoSupport, golibvirt.ErrOperationUnsupported, golibvirt.ErrArgumentUnsupported:
		return drivers.ErrNotSupported
	case golibvirt.ErrOperationTimeout, golibvirt.ErrAgentUnresponsive:
		return drivers.ErrTimeout
	case golibvirt.ErrRPC, golibvirt.ErrNoConnect, golibvirt.ErrInvalidConn, golibvirt.ErrAuthFailed:
		return drivers.ErrUnreachable
	}
	return nil
}

// classify adds the drivers error kind to err when it has one.
func classify(err error) error {
	return drivers.WithKind(err, kindOf(err))
}

// hasCode reports whether err is a libvirt error with code.
func hasCode(err error, code golibvirt.ErrorNumber) bool {
	var lerr golibvirt.Error
	return errors.As(err, &lerr) && golibvirt.ErrorNumber(lerr.Code) == code
}

// connectionLost reports whether err says the connection itself failed, so
// that it must be dropped and made again.
func connectionLost(err error) bool {
	var lerr golibvirt.Error
	if errors.As(err, &lerr) {
		return false
	}
	return errors.Is(kindOf(err), drivers.ErrUnreachable)
}
