package main

import (
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/daemon/daemontest"
	"github.com/herd-project/herd/internal/testpki"
	"github.com/herd-project/herd/internal/testutil"
)

// TestCLIOverTLSWithToken: the CLI reaches an HTTPS API with --ca-cert (or
// HERD_CACERT) and a token; without either it fails with a clear error.
func TestCLIOverTLSWithToken(t *testing.T) {
	f := testpki.NewCA(t, "herd test CA").WriteFiles(t, t.TempDir(), "dev")
	tok := writeTestTokens(t)
	dev := daemontest.StartDev(t, daemon.DevOptions{Hosts: 2, VMs: 2, Configure: func(c *config.Server) {
		c.TLS = config.TLS{CertFile: f.Cert, KeyFile: f.Key, CAFile: f.CA}
		c.API.TokensFile = tok.file
	}})
	if !strings.HasPrefix(dev.APIAddr(), "https://") {
		t.Fatalf("API %s is not https", dev.APIAddr())
	}
	addr := "--address=" + dev.APIAddr()
	testutil.WaitFor(t, 20*time.Second, "herd host ls over TLS", func() bool {
		code, out, _ := runCLI("host", "ls", addr, "--ca-cert", f.CA, "--token", tok.read)
		return code == 0 && strings.Count(out, "\n") == 3
	})
	// host:port without a scheme means https once a CA is given.
	bare := "--address=" + strings.TrimPrefix(dev.APIAddr(), "https://")
	if code, _, errOut := runCLI("cluster", bare, "--ca-cert", f.CA, "--token", tok.read); code != 0 {
		t.Fatalf("bare address with --ca-cert: exit %d %s", code, errOut)
	}
	t.Setenv("HERD_CACERT", f.CA)
	t.Setenv("HERD_TOKEN", tok.read)
	if code, _, errOut := runCLI("vm", "ls", addr); code != 0 {
		t.Fatalf("HERD_CACERT and HERD_TOKEN: exit %d %s", code, errOut)
	}
	t.Setenv("HERD_CACERT", "")
	if code, _, errOut := runCLI("host", "ls", addr); code != exitError || !strings.Contains(errOut, "certificate") {
		t.Fatalf("without the CA: exit %d %s", code, errOut)
	}
	if code, _, errOut := runCLI("host", "ls", addr, "--ca-cert", f.CA, "--token", ""); code != exitError || !strings.Contains(errOut, "HTTP 401") {
		t.Fatalf("without a token: exit %d %s", code, errOut)
	}
	if code, _, errOut := runCLI("host", "ls", addr, "--ca-cert", "/nonexistent/ca.crt"); code != exitUsage || !strings.Contains(errOut, "--ca-cert") {
		t.Fatalf("missing CA file: exit %d %s", code, errOut)
	}
}
