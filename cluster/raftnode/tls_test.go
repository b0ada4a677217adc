package raftnode

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/internal/testpki"
	"github.com/herd-project/herd/internal/testutil"
)

// openTLSNode opens a node that speaks raft over mutual TLS with cert,
// trusting pool.
func openTLSNode(t *testing.T, id string, cert tls.Certificate, ca *testpki.CA) *Node {
	t.Helper()
	cfg, err := MutualTLS(cert, ca.Pool())
	if err != nil {
		t.Fatal(err)
	}
	nc := NodeConfigForTest(t, id, t.TempDir())
	nc.TLS = cfg
	n, err := Open(nc)
	if err != nil {
		t.Fatalf("open %s: %v", id, err)
	}
	t.Cleanup(func() { n.Shutdown() })
	return n
}

func TestRaftOverMutualTLS(t *testing.T) {
	ca := testpki.NewCA(t, "herd test CA")
	var nodes []*Node
	servers := map[string]string{}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("s%d", i)
		n := openTLSNode(t, id, ca.TLSCert(t, id), ca)
		nodes = append(nodes, n)
		servers[id] = n.Addr()
	}
	for _, n := range nodes {
		if err := n.Bootstrap(servers); err != nil {
			t.Fatal(err)
		}
	}
	leader := WaitLeader(t, 15*time.Second, nodes...)
	ctx := context.Background()
	if _, err := leader.Apply(ctx, &cluster.SetEventRetention{Max: 500}); err != nil {
		t.Fatalf("apply over TLS: %v", err)
	}
	for _, n := range nodes {
		n := n
		testutil.WaitFor(t, 5*time.Second, "the entry replicated to "+n.ID(), func() bool { return n.FSM().State().EventRetention == 500 })
	}

	// A server whose certificate another CA signed (it trusts ours) is
	// added to the configuration, but never receives the log.
	rogueCA := testpki.NewCA(t, "rogue CA")
	rogueCfg, _ := MutualTLS(rogueCA.TLSCert(t, "s4"), ca.Pool())
	rogueCfg.ClientCAs = ca.Pool()
	nc := NodeConfigForTest(t, "s4", t.TempDir())
	nc.TLS = rogueCfg
	rogue, err := Open(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Shutdown()
	if err := leader.AddVoter("s4", rogue.Addr()); err != nil {
		t.Logf("add voter s4: %v", err)
	}
	if _, err := leader.Apply(ctx, &cluster.SetEventRetention{Max: 600}); err != nil {
		t.Fatalf("apply with a rogue member: %v", err)
	}
	time.Sleep(2 * time.Second)
	if id, _ := rogue.Leader(); id != "" || rogue.FSM().State().Index != 0 || !rogue.Raft().LastContact().IsZero() {
		t.Fatalf("a server without a valid certificate took part in raft: leader %q, index %d", id, rogue.FSM().State().Index)
	}

	// Without any client certificate the handshake is refused before a
	// byte reaches raft; plain TCP gets nothing either.
	c, err := tls.Dial("tcp", leader.Addr(), &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	if err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte{0})
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err == nil {
		t.Fatal("a client without a certificate got an answer from raft")
	}
	t.Logf("no client certificate: %v", err)
	pc, err := net.DialTimeout("tcp", leader.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pc.SetDeadline(time.Now().Add(12 * time.Second))
	pc.Write([]byte("\x00plain raft rpc\n"))
	if b, err := io.ReadAll(pc); len(b) > 0 && err == nil {
		t.Fatalf("plain TCP got %q from a TLS raft port", b)
	}
	pc.Close()

	// TLS configs that do not verify clients are refused outright.
	if _, err := newTLSStreamLayer("127.0.0.1:0", nil, &tls.Config{Certificates: []tls.Certificate{ca.TLSCert(t, "x")}}, testutil.Logger(t)); err == nil {
		t.Fatal("a raft TLS layer without client verification was accepted")
	}
}
