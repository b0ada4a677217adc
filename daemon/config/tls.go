package daemon

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
)

// tlsFileError names the tls key whose file is bad.
type tlsFileError struct {
	key string
	err error
}

func (e *tlsFileError) Error() string { return e.key + ": " + e.err.Error() }
func (e *tlsFileError) Unwrap() error { return e.err }

// tlsBundle is every TLS configuration a server uses, from one CA and one
// certificate (which must allow both server and client authentication).
type tlsBundle struct {
	// api serves HTTPS.
	api *tls.Config
	// client is for this server's calls to other servers' APIs.
	client *tls.Config
	// raft is mutual TLS between raft voters.
	raft *tls.Config
}

// loadTLS reads the certificate, key and CA of the tls section.
func loadTLS(t TLSConfig) (*tlsBundle, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, &tlsFileError{key: "tls.cert_file", err: fmt.Errorf("load certificate and key: %w", err)}
	}
	pool, err := api.LoadCAPool(t.CAFile)
	if err != nil {
		return nil, &tlsFileError{key: "tls.ca_file", err: err}
	}
	apiCfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, ClientCAs: pool}
	if t.VerifyClients {
		apiCfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	raftCfg, err := cluster.MutualTLS(cert, pool)
	if err != nil {
		return nil, &tlsFileError{key: "tls.cert_file", err: err}
	}
	return &tlsBundle{
		api:    apiCfg,
		client: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{cert}},
		raft:   raftCfg,
	}, nil
}

// clientTransport is the HTTP transport for calls to other servers.
func (s *Server) clientTransport() http.RoundTripper {
	if s.tls == nil {
		return http.DefaultTransport
	}
	return s.transport
}

func newTLSTransport(cfg *tls.Config) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	t.TLSHandshakeTimeout = 10 * time.Second
	return t
}
