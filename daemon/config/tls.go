package config

import (
	"crypto/tls"
	"fmt"

	"github.com/herd-project/herd/cluster/raftnode"
	"github.com/herd-project/herd/daemon/api"
)

// tlsFileError names the tls key whose file is bad.
type tlsFileError struct {
	key string
	err error
}

func (e *tlsFileError) Error() string { return e.key + ": " + e.err.Error() }
func (e *tlsFileError) Unwrap() error { return e.err }

// TLSBundle is every TLS configuration a server uses, from one CA and one
// certificate (which must allow both server and client authentication).
type TLSBundle struct {
	// API serves HTTPS.
	API *tls.Config
	// Client is for this server's calls to other servers' APIs.
	Client *tls.Config
	// Raft is mutual TLS between raft voters.
	Raft *tls.Config
}

// Load reads the certificate, key and CA of the tls section.
func (t TLS) Load() (*TLSBundle, error) {
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
	raftCfg, err := raftnode.MutualTLS(cert, pool)
	if err != nil {
		return nil, &tlsFileError{key: "tls.cert_file", err: err}
	}
	return &TLSBundle{
		API:    apiCfg,
		Client: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{cert}},
		Raft:   raftCfg,
	}, nil
}
