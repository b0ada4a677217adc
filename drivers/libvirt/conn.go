package libvirt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"

	"github.com/herd-project/herd/drivers"
)

const (
	// minBackoff and maxBackoff bound the wait between reconnections.
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
	// disconnectTimeout bounds the polite goodbye in Close.
	disconnectTimeout = 2 * time.Second
	// defaultTCPPort is libvirtd's listen_tcp port.
	defaultTCPPort = "16509"
	// defaultSocket is the system libvirtd's read-write socket.
	defaultSocket = "/var/run/libvirt/libvirt-sock"
)

// session is one open connection to a libvirtd.
type session struct {
	l    *golibvirt.Libvirt
	conn net.Conn
	once sync.Once
}

// kill closes the socket: every RPC waiting on it returns at once.
func (s *session) kill() {
	s.once.Do(func() { s.conn.Close() })
}

// hostConn is the driver's single connection to one host's libvirtd. It
// connects on demand, drops the connection when a call overruns its
// deadline, and keeps it checked and reconnected in monitor.
type hostConn struct {
	cfg         HostConfig
	network     string // "tcp" or "unix"
	addr        string
	remote      golibvirt.ConnectURI // the URI libvirtd opens for us
	callTimeout time.Duration
	log         *slog.Logger
	wake        chan struct{} // tells monitor a session appeared

	mu      sync.Mutex
	sess    *session
	dialing chan struct{} // closed when the running connection attempt ends
	state   drivers.Connection
	lastErr error
	backoff time.Duration
	retryAt time.Time
	closed  bool
	cache   []drivers.VM // last VMs listed, reported while unreachable
	warned  map[string]bool
}

// warnOnce reports whether the warning keyed key is new for this host.
func (h *hostConn) warnOnce(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.warned[key] {
		return false
	}
	if h.warned == nil {
		h.warned = make(map[string]bool)
	}
	h.warned[key] = true
	return true
}

func newHostConn(cfg HostConfig, callTimeout time.Duration, log *slog.Logger) (*hostConn, error) {
	u, err := url.Parse(cfg.URI)
	if err != nil {
		return nil, fmt.Errorf("host %s: parse URI %q: %w", cfg.Name, cfg.URI, err)
	}
	h := &hostConn{
		cfg:         cfg,
		remote:      golibvirt.RemoteURI(u),
		callTimeout: callTimeout,
		log:         log.With("host", cfg.Name),
		wake:        make(chan struct{}, 1),
		state:       drivers.Disconnected,
		lastErr:     errors.New("not connected yet"),
	}
	transport := "unix"
	if scheme := strings.SplitN(u.Scheme, "+", 2); len(scheme) == 2 {
		transport = scheme[1]
	} else if u.Host != "" {
		transport = "tls"
	}
	switch transport {
	case "tcp":
		port := u.Port()
		if port == "" {
			port = defaultTCPPort
		}
		h.network, h.addr = "tcp", net.JoinHostPort(u.Hostname(), port)
	case "unix":
		h.network, h.addr = "unix", defaultSocket
		if s := u.Query().Get("socket"); s != "" {
			h.addr = s
		}
	default:
		return nil, fmt.Errorf("host %s: URI %q: transport %q: %w (use tcp or unix)", cfg.Name, cfg.URI, transport, drivers.ErrNotSupported)
	}
	return h, nil
}

// timeoutError is what a call that overran ctx or the call timeout returns.
func timeoutError(ctx context.Context, what string) error {
	cause := context.Cause(ctx)
	if errors.Is(cause, context.Canceled) {
		return fmt.Errorf("%s: %w", what, cause)
	}
	return drivers.WithKind(fmt.Errorf("%s: %w", what, cause), drivers.ErrTimeout)
}

// session returns the open connection, making one when there is none. A
// connection attempt already running is waited for, not repeated.
func (h *hostConn) session(ctx context.Context) (*session, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, fmt.Errorf("host %s: driver closed: %w", h.cfg.Name, drivers.ErrUnreachable)
	}
	if s := h.sess; s != nil {
		h.mu.Unlock()
		return s, nil
	}
	if ch := h.dialing; ch != nil {
		h.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, timeoutError(ctx, "connect to "+h.cfg.Name)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.sess != nil {
			return h.sess, nil
		}
		return nil, fmt.Errorf("connect to %s: %w", h.cfg.Name, h.lastErr)
	}
	ch := make(chan struct{})
	h.dialing = ch
	h.mu.Unlock()

	s, err := h.dial(ctx)

	h.mu.Lock()
	defer h.mu.Unlock()
	h.dialing = nil
	close(ch)
	if err == nil && h.closed {
		s.kill()
		err = fmt.Errorf("driver closed: %w", drivers.ErrUnreachable)
	}
	if err != nil {
		h.failLocked(err)
		return nil, fmt.Errorf("connect to %s: %w", h.cfg.Name, err)
	}
	if h.state != drivers.Connected {
		h.log.Info("connected", "uri", h.cfg.URI)
	}
	h.sess, h.state, h.lastErr, h.backoff = s, drivers.Connected, nil, 0
	select {
	case h.wake <- struct{}{}:
	default:
	}
	return s, nil
}

// dial opens a socket and runs libvirt's handshake, both bounded by ctx.
func (h *hostConn) dial(ctx context.Context) (*session, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, h.network, h.addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, timeoutError(ctx, "dial "+h.addr)
		}
		return nil, classify(err)
	}
	s := &session{l: golibvirt.NewWithDialer(dialers.NewAlreadyConnected(conn)), conn: conn}
	done := make(chan error, 1)
	go func() { done <- s.l.ConnectToURI(h.remote) }()
	select {
	case err := <-done:
		if err != nil {
			s.kill()
			return nil, classify(fmt.Errorf("open %s: %w", h.remote, err))
		}
		return s, nil
	case <-ctx.Done():
		s.kill()
		return nil, timeoutError(ctx, "open "+string(h.remote))
	}
}

// failLocked records a failed connection attempt and schedules the next.
func (h *hostConn) failLocked(err error) {
	h.state = drivers.Disconnected
	if errors.Is(err, drivers.ErrTimeout) {
		h.state = drivers.NotResponding
	}
	h.lastErr = err
	h.backoff = min(max(2*h.backoff, minBackoff), maxBackoff)
	h.retryAt = time.Now().Add(h.backoff)
}

// drop forgets session s after err, if it is still the current one, and
// closes it.
func (h *hostConn) drop(s *session, err error) {
	s.kill()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sess != s {
		return
	}
	h.sess = nil
	h.failLocked(err)
	h.log.Warn("connection dropped", "state", h.state, "err", err)
}

// ping checks the connection with a cheap RPC.
func (h *hostConn) ping(ctx context.Context) error {
	return h.call(ctx, "ping", func(l *golibvirt.Libvirt) error {
		_, err := l.ConnectGetLibVersion()
		return err
	})
}

// status is the host's connection state and the last error behind it.
func (h *hostConn) status() (drivers.Connection, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state, h.lastErr
}

// monitor pings the connection every interval, notices when libvirtd
// closes it, and reconnects with backoff, until stop is closed.
func (h *hostConn) monitor(stop <-chan struct{}, interval time.Duration) {
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		h.mu.Lock()
		s, retryAt := h.sess, h.retryAt
		h.mu.Unlock()
		var lost <-chan struct{}
		wait := interval
		if s != nil {
			lost = s.l.Disconnected()
		} else {
			wait = max(time.Until(retryAt), 0)
		}
		timer.Reset(wait)
		select {
		case <-stop:
			return
		case <-h.wake:
			continue
		case <-lost:
			h.drop(s, fmt.Errorf("connection closed: %w", drivers.ErrUnreachable))
			continue
		case <-timer.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), min(interval, h.callTimeout))
		if s != nil {
			if err := h.ping(ctx); err != nil {
				h.log.Warn("keepalive failed", "err", err)
			}
		} else if _, err := h.session(ctx); err != nil {
			h.log.Debug("reconnect failed", "err", err)
		}
		cancel()
	}
}

// close ends the connection; calls after it fail.
func (h *hostConn) close() {
	h.mu.Lock()
	s := h.sess
	h.closed, h.sess, h.state, h.lastErr = true, nil, drivers.Disconnected, errors.New("driver closed")
	h.mu.Unlock()
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), disconnectTimeout)
	defer cancel()
	if err := h.run(ctx, s, "disconnect", (*golibvirt.Libvirt).Disconnect); err != nil {
		h.log.Debug("disconnect", "err", err)
	}
	s.kill()
}
