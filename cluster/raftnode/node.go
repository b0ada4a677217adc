// Package raftnode runs the raft node that replicates cluster's state
// (hashicorp/raft, raft-boltdb, file snapshots): opening and bootstrapping
// it, the transport (TCP, or mutual TLS), applies and barriers, membership,
// and the cutting of a large inventory into entries followers take whole.
package raftnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/internal/logbridge"
)

// ErrNotLeader is returned by writes on a server that is not the leader.
var ErrNotLeader = errors.New("not the raft leader")

// Config configures one raft voter.
type Config struct {
	// ID is the server's unique name in the cluster.
	ID string
	// DataDir holds the raft log, stable store and snapshots.
	DataDir string
	// Bind is the raft listen address (host:port).
	Bind string
	// Advertise is the address other servers reach this one at; Bind when empty.
	Advertise string
	// Timing; zero values take raft's production defaults. Tests shorten them.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// SnapshotThreshold is how many log entries trigger a snapshot.
	SnapshotThreshold uint64
	// ApplyTimeout bounds one write; default 10s.
	ApplyTimeout time.Duration
	Logger       *slog.Logger
	// TLS, when set, carries raft over mutual TLS (see MutualTLS); plain
	// TCP otherwise.
	TLS *tls.Config
	// WrapLogStore, when set, wraps the raft log store (tests slow it down
	// to play a slow disk).
	WrapLogStore func(raft.LogStore) raft.LogStore
}

// Node is one raft voter with Herd's FSM.
type Node struct {
	cfg       Config
	raft      *raft.Raft
	fsm       *cluster.FSM
	transport *raft.NetworkTransport
	store     *raftboltdb.BoltStore
	snaps     *raft.FileSnapshotStore
	log       *slog.Logger
}

// Open starts a raft node over the data dir, recovering whatever state it
// holds. A fresh node is not part of any cluster until Bootstrap or a
// leader's AddVoter.
func Open(cfg Config) (*Node, error) {
	if cfg.ID == "" {
		return nil, errors.New("open raft node: empty node id")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	if cfg.Advertise == "" {
		cfg.Advertise = cfg.Bind
	}
	log := cfg.Logger.With("node", cfg.ID)
	rdir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(rdir, 0o750); err != nil {
		return nil, fmt.Errorf("open raft node: %w", err)
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = logbridge.HCLogger(log, "raft")
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	}
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}

	store, err := raftboltdb.NewBoltStore(filepath.Join(rdir, "raft.db"))
	if err != nil {
		return nil, fmt.Errorf("open raft log %s: %w", rdir, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(rdir, 2, logbridge.HCLogger(log, "snapshot"))
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open snapshot store %s: %w", rdir, err)
	}
	// A port of 0 (tests) advertises whatever port the listener got.
	var advertise net.Addr
	if _, port, _ := net.SplitHostPort(cfg.Advertise); port != "0" {
		addr, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
		if err != nil {
			store.Close()
			return nil, fmt.Errorf("raft advertise address %q: %w", cfg.Advertise, err)
		}
		advertise = addr
	}
	transport, err := openTransport(cfg, advertise, log)
	if err != nil {
		store.Close()
		return nil, err
	}
	fsm := cluster.NewFSM(log)
	var logs raft.LogStore = store
	if cfg.WrapLogStore != nil {
		logs = cfg.WrapLogStore(store)
	}
	r, err := raft.NewRaft(rc, fsm, logs, store, snaps, transport)
	if err != nil {
		transport.Close()
		store.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	return &Node{cfg: cfg, raft: r, fsm: fsm, transport: transport, store: store, snaps: snaps, log: log}, nil
}

// openTransport listens for raft: over mutual TLS when configured.
func openTransport(cfg Config, advertise net.Addr, log *slog.Logger) (*raft.NetworkTransport, error) {
	if cfg.TLS == nil {
		t, err := raft.NewTCPTransportWithLogger(cfg.Bind, advertise, 3, 10*time.Second, logbridge.HCLogger(log, "raft-net"))
		if err != nil {
			return nil, fmt.Errorf("raft listen on %s: %w", cfg.Bind, err)
		}
		return t, nil
	}
	layer, err := newTLSStreamLayer(cfg.Bind, advertise, cfg.TLS, log)
	if err != nil {
		return nil, err
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 3, Timeout: 10 * time.Second, Logger: logbridge.HCLogger(log, "raft-net"),
	}), nil
}

// ID is this server's name.
func (n *Node) ID() string { return n.cfg.ID }

// Addr is the address other servers reach this one's raft at.
func (n *Node) Addr() string { return string(n.transport.LocalAddr()) }

// FSM gives read access to the replicated state.
func (n *Node) FSM() *cluster.FSM { return n.fsm }

// Raft exposes the underlying raft for statistics.
func (n *Node) Raft() *raft.Raft { return n.raft }

// HasState reports whether the node has any log or snapshot (so it was part
// of a cluster before and must not bootstrap again).
func (n *Node) HasState() (bool, error) {
	return raft.HasExistingState(n.store, n.store, n.snaps)
}

// Bootstrap forms a new cluster out of servers (id → raft address). Every
// server of a new cluster may call it with the same set; a node that already
// has state ignores it.
func (n *Node) Bootstrap(servers map[string]string) error {
	var cfg raft.Configuration
	for id, addr := range servers {
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(addr)})
	}
	err := n.raft.BootstrapCluster(cfg).Error()
	if errors.Is(err, raft.ErrCantBootstrap) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bootstrap raft cluster: %w", err)
	}
	return nil
}

// IsLeader reports whether this node is the leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the leader's id and raft address, empty when there is none.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// LeaderCh reports leadership changes of this node (true when it becomes
// leader). Only one consumer may read it.
func (n *Node) LeaderCh() <-chan bool { return n.raft.LeaderCh() }

// Apply commits cmd and applies it. It returns the index the command was
// committed at, or the state machine's refusal as an *ApplyError. Only the
// leader can apply; others return ErrNotLeader.
func (n *Node) Apply(ctx context.Context, cmd cluster.Command) (uint64, error) {
	return n.Submit(ctx, cmd)()
}

// Submit hands cmd to raft and returns once raft has taken it, before it
// is committed; wait then blocks until it is committed and applied, with
// Apply's results. Commands submitted one after another are committed in
// that order, so a caller can start several without waiting for each
// commit in turn.
func (n *Node) Submit(ctx context.Context, cmd cluster.Command) (wait func() (uint64, error)) {
	b, err := cluster.Encode(cmd)
	if err != nil {
		return func() (uint64, error) { return 0, err }
	}
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := n.raft.Apply(b, timeout)
	return func() (uint64, error) {
		if err := f.Error(); err != nil {
			if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
				return 0, fmt.Errorf("apply command %d: %w", cmd.Type(), ErrNotLeader)
			}
			return 0, fmt.Errorf("apply command %d: %w", cmd.Type(), err)
		}
		if resErr, ok := f.Response().(error); ok && resErr != nil {
			return f.Index(), resErr
		}
		return f.Index(), nil
	}
}

// Barrier waits until every entry committed before it is applied here (used
// by a new leader before it acts on state).
func (n *Node) Barrier(timeout time.Duration) error {
	return n.raft.Barrier(timeout).Error()
}

// AddVoter adds a server to the cluster; leader only.
func (n *Node) AddVoter(id, addr string) error {
	err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error()
	return notLeader(err)
}

// AddNonvoter adds a server that receives the log but does not vote (a
// joining server, until it is promoted); leader only.
func (n *Node) AddNonvoter(id, addr string) error {
	err := n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error()
	return notLeader(err)
}

// notLeader maps raft's not-the-leader error onto ours.
func notLeader(err error) error {
	if errors.Is(err, raft.ErrNotLeader) {
		return ErrNotLeader
	}
	return err
}

// Stats is where this server's raft stands.
type Stats struct {
	State        string `json:"state"`
	Term         uint64 `json:"term"`
	LastLogIndex uint64 `json:"last_log_index"`
	LastLogTerm  uint64 `json:"last_log_term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// LastContactMillis is how long ago a follower last heard from the
	// leader: 0 on the leader, -1 on a server that never has.
	LastContactMillis int64 `json:"last_contact_ms"`
}

// Stats reads this server's raft position.
func (n *Node) Stats() Stats {
	st := n.raft.Stats()
	num := func(k string) uint64 {
		v, _ := strconv.ParseUint(st[k], 10, 64)
		return v
	}
	out := Stats{State: n.raft.State().String(), Term: num("term"), LastLogIndex: num("last_log_index"),
		LastLogTerm: num("last_log_term"), CommitIndex: n.raft.CommitIndex(), AppliedIndex: n.raft.AppliedIndex()}
	if n.raft.State() != raft.Leader {
		out.LastContactMillis = -1
		if lc := n.raft.LastContact(); !lc.IsZero() {
			out.LastContactMillis = time.Since(lc).Milliseconds()
		}
	}
	return out
}

// RemoveServer removes a server from the cluster; leader only.
func (n *Node) RemoveServer(id string) error {
	err := n.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error()
	return notLeader(err)
}

// Member is one server in the raft configuration.
type Member struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
}

// Members lists the raft configuration.
func (n *Node) Members() ([]Member, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	var out []Member
	for _, s := range f.Configuration().Servers {
		out = append(out, Member{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// Snapshot asks raft to take a snapshot now.
func (n *Node) Snapshot() error { return n.raft.Snapshot().Error() }

// Shutdown stops raft and closes the log. The data dir keeps everything.
func (n *Node) Shutdown() error {
	err := n.raft.Shutdown().Error()
	if cerr := n.transport.Close(); err == nil {
		err = cerr
	}
	if cerr := n.store.Close(); err == nil {
		err = cerr
	}
	return err
}
