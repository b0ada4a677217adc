package raftnode

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// MutualTLS returns the TLS configuration raft voters use with each other:
// cert is presented both as server and as client certificate, and the peer's
// must be signed by a CA in pool. Dialing verifies the peer's address (IP or
// name) against its certificate.
func MutualTLS(cert tls.Certificate, pool *x509.CertPool) (*tls.Config, error) {
	if pool == nil {
		return nil, errors.New("mutual TLS: no CA")
	}
	if len(cert.Certificate) == 0 {
		return nil, errors.New("mutual TLS: no certificate")
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}, nil
}

// tlsStreamLayer is a raft.StreamLayer over TLS: every connection, in and
// out, is mutually authenticated. Handshakes of incoming connections run
// concurrently, so a slow or silent peer holds up no one.
type tlsStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	cfg       *tls.Config
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

var _ raft.StreamLayer = (*tlsStreamLayer)(nil)

// handshakeTimeout bounds an incoming TLS handshake.
const handshakeTimeout = 10 * time.Second

// newTLSStreamLayer listens on bind. advertise may be nil (the listener's
// address is advertised then).
func newTLSStreamLayer(bind string, advertise net.Addr, cfg *tls.Config, log *slog.Logger) (*tlsStreamLayer, error) {
	if cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil || cfg.RootCAs == nil {
		return nil, errors.New("raft TLS: the configuration must require and verify client certificates (use MutualTLS)")
	}
	ln, err := tls.Listen("tcp", bind, cfg)
	if err != nil {
		return nil, fmt.Errorf("raft listen on %s: %w", bind, err)
	}
	if advertise == nil {
		advertise = ln.Addr()
	}
	if a, ok := advertise.(*net.TCPAddr); !ok || a.IP == nil || a.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raft advertise address %v is not a reachable IP address", advertise)
	}
	l := &tlsStreamLayer{ln: ln, advertise: advertise, cfg: cfg, conns: make(chan net.Conn), done: make(chan struct{})}
	go l.acceptLoop(log)
	return l, nil
}

func (l *tlsStreamLayer) acceptLoop(log *slog.Logger) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			log.Error("raft TLS accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go l.handshake(c.(*tls.Conn), log)
	}
}

func (l *tlsStreamLayer) handshake(c *tls.Conn, log *slog.Logger) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := c.Handshake(); err != nil {
		log.Warn("raft TLS handshake refused", "peer", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

// Accept returns the next connection whose peer presented a valid
// certificate.
func (l *tlsStreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *tlsStreamLayer) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.ln.Close()
	})
	return err
}

func (l *tlsStreamLayer) Addr() net.Addr { return l.advertise }

// Dial connects to a peer and completes the handshake.
func (l *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, fmt.Errorf("raft dial %s: %w", address, err)
	}
	cfg := l.cfg.Clone()
	cfg.ServerName = host
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", string(address), cfg)
	if err != nil {
		return nil, fmt.Errorf("raft dial %s: %w", address, err)
	}
	return c, nil
}
