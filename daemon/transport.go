package daemon

import (
	"crypto/tls"
	"net/http"
	"time"
)

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
