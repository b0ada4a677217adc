package libvirt

import (
	"context"
	"errors"
	"fmt"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/herd-project/herd/drivers"
)

// runQuery calls fn with s's client and waits until fn returns or ctx is
// done. When ctx's deadline passes first, s is dropped: that ends fn's
// RPCs, which go-libvirt would otherwise wait for forever. A cancelled ctx
// leaves s open (the late reply is discarded). fn's value is returned only
// when fn finished in time, so fn must put what it reads in its result,
// never in the caller's variables: an abandoned fn runs on until its RPC
// fails.
func runQuery[T any](ctx context.Context, h *hostConn, s *session, op string, fn func(*golibvirt.Libvirt) (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := fn(s.l)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		if r.err != nil && connectionLost(r.err) {
			h.drop(s, classify(r.err))
		}
		return r.v, classify(r.err)
	case <-ctx.Done():
		var zero T
		err := timeoutError(ctx, fmt.Sprintf("%s on %s", op, h.cfg.Name))
		if errors.Is(err, drivers.ErrTimeout) {
			h.drop(s, err)
		}
		return zero, err
	}
}

// query runs fn on h's connection, connecting first when needed, with
// ctx's deadline shortened to the call timeout.
func query[T any](ctx context.Context, h *hostConn, op string, fn func(*golibvirt.Libvirt) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, h.callTimeout)
	defer cancel()
	s, err := h.session(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	return runQuery(ctx, h, s, op, fn)
}

// queryConnected is query for a host that is connected now; otherwise it
// fails at once with ErrUnreachable and leaves reconnecting to monitor.
func queryConnected[T any](ctx context.Context, h *hostConn, op string, fn func(*golibvirt.Libvirt) (T, error)) (T, error) {
	h.mu.Lock()
	s, state, last := h.sess, h.state, h.lastErr
	h.mu.Unlock()
	if s == nil {
		var zero T
		return zero, drivers.WithKind(fmt.Errorf("%s on %s: host %s: %w", op, h.cfg.Name, state, last), drivers.ErrUnreachable)
	}
	ctx, cancel := context.WithTimeout(ctx, h.callTimeout)
	defer cancel()
	return runQuery(ctx, h, s, op, fn)
}

// noValue adapts an fn that only fails.
func noValue(fn func(*golibvirt.Libvirt) error) func(*golibvirt.Libvirt) (struct{}, error) {
	return func(l *golibvirt.Libvirt) (struct{}, error) { return struct{}{}, fn(l) }
}

// run is runQuery for an fn without a value.
func (h *hostConn) run(ctx context.Context, s *session, op string, fn func(*golibvirt.Libvirt) error) error {
	_, err := runQuery(ctx, h, s, op, noValue(fn))
	return err
}

// call is query for an fn without a value.
func (h *hostConn) call(ctx context.Context, op string, fn func(*golibvirt.Libvirt) error) error {
	_, err := query(ctx, h, op, noValue(fn))
	return err
}
