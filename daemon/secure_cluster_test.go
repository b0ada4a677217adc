package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/drivers/vsphere"
	"github.com/herd-project/herd/internal/testpki"
	"github.com/herd-project/herd/internal/testutil"
)

// newSecureCluster is three servers with API tokens, HTTPS and raft over
// mutual TLS, formed with bootstrap_expect 3.
func newSecureCluster(t *testing.T, sim *vsphere.Simulator, ca *testpki.CA) ([]*Server, string) {
	t.Helper()
	tokens, server := testutil.WriteTokens(t)
	certDir := t.TempDir()
	apis := []string{testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)}
	vc := sim.Config()
	var servers []*Server
	var caFile string
	for i := range apis {
		cfg := config.DefaultServer()
		cfg.NodeName = fmt.Sprintf("s%d", i+1)
		cfg.DataDir = t.TempDir()
		cfg.API.Listen = apis[i]
		cfg.API.TokensFile, cfg.API.ServerTokenFile = tokens, server
		cfg.Raft.Listen = testutil.FreePort(t)
		cfg.Raft.BootstrapExpect = 3
		for j, a := range apis {
			if j != i {
				cfg.Raft.Join = append(cfg.Raft.Join, a)
			}
		}
		f := ca.WriteFiles(t, certDir, cfg.NodeName)
		cfg.TLS = config.TLS{CertFile: f.Cert, KeyFile: f.Key, CAFile: f.CA}
		caFile = f.CA
		cfg.Inventory.SyncInterval = time.Second
		cfg.Drivers = []config.Driver{{Name: "vc", Type: "vsphere", URL: vc.URL, Username: vc.Username, Insecure: true, Password: vc.Password}}
		cfg.PolicyFile = filepath.Join(cfg.DataDir, "policy.yaml")
		if err := writeDevPolicy(cfg.PolicyFile, nil); err != nil {
			t.Fatal(err)
		}
		opts := testOptions(t)
		opts.Logger = slog.New(slog.DiscardHandler)
		s, err := NewServer(cfg, opts)
		if err != nil {
			t.Fatalf("server %d: %v", i+1, err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		servers = append(servers, s)
	}
	t.Cleanup(func() {
		for _, s := range servers {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			s.Shutdown(ctx)
			cancel()
		}
	})
	return servers, caFile
}

func tlsClient(t *testing.T, s *Server, caFile, token string) *api.Client {
	t.Helper()
	c := client(t, s.APIAddr(), token)
	cfg, err := api.ClientTLS(caFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c.UseTLS(cfg)
	return c
}

// TestSecureClusterFormsAndForwards: three servers form over mutual TLS,
// calling each other with the internal token; a write sent to a follower
// reaches the leader with the caller's own token, which the event names.
func TestSecureClusterFormsAndForwards(t *testing.T) {
	sim, err := vsphere.StartSimulator(vsphere.SimConfig{Hosts: 2, VMs: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	ca := testpki.NewCA(t, "herd test CA")
	servers, caFile := newSecureCluster(t, sim, ca)
	ctx := context.Background()
	var leader, follower *Server
	testutil.WaitFor(t, 30*time.Second, "a three-server cluster over TLS, all registered", func() bool {
		leader, follower = nil, nil
		for _, s := range servers {
			if s.Node().IsLeader() {
				leader = s
			} else {
				follower = s
			}
		}
		if leader == nil {
			return false
		}
		cl, err := tlsClient(t, follower, caFile, readToken).Cluster(ctx)
		if err != nil || len(cl.Servers) != 3 {
			return false
		}
		for _, sv := range cl.Servers {
			if !strings.HasPrefix(sv.APIAddr, "https://") {
				return false
			}
		}
		return true
	})
	for _, s := range servers {
		if !strings.HasPrefix(s.APIAddr(), "https://") {
			t.Fatalf("advertised API %s is not https", s.APIAddr())
		}
	}
	admin := tlsClient(t, follower, caFile, adminToken)
	hosts := waitInventory(t, admin, 2, 2)

	// Through the follower: the leader checks the forwarded token.
	op := tlsClient(t, follower, caFile, opToken)
	if _, err := op.SetHostStatus(ctx, hosts[0].Name, api.StatusRequest{Status: "NOT_ACCEPTING", Reason: "forwarded"}); err != nil {
		t.Fatalf("write through the follower: %v", err)
	}
	testutil.WaitFor(t, 5*time.Second, "the forwarded write's event, by token:ci", func() bool {
		ev, err := admin.Events(ctx, api.EventQuery{Host: hosts[0].Name})
		if err != nil {
			return false
		}
		e, ok := lastOfType(ev.Events, "host.status")
		return ok && e.Actor == "token:ci"
	})
	var se *api.StatusError
	if _, err := tlsClient(t, follower, caFile, readToken).SetHostStatus(ctx, hosts[0].Name, api.StatusRequest{Status: "AVAILABLE"}); !errors.As(err, &se) || se.Code != 403 {
		t.Fatalf("read token writing through the follower: %v", err)
	}
	if _, err := tlsClient(t, follower, caFile, "").Hosts(ctx); !errors.As(err, &se) || se.Code != 401 {
		t.Fatalf("no token through the follower: %v", err)
	}

	// Plain HTTP to the TLS API gets no answer of substance.
	plain := "http://" + strings.TrimPrefix(leader.APIAddr(), "https://")
	if resp, err := http.Get(plain + "/healthz"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatalf("plain HTTP to the TLS API answered 200: %s", b)
		}
	}
	// A client that does not trust the CA refuses the server.
	if _, err := client(t, leader.APIAddr(), readToken).Hosts(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client without the CA talked to the TLS API: %v", err)
	}
}
