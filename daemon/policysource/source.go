package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/raftnode"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/handlers"
	"github.com/herd-project/herd/daemon/wire"
	"github.com/herd-project/herd/internal/ctxsleep"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/placement"
)

// policyHolder caches the parsed policy in force and tracks this server's
// own policy file: its hash (for drift) and how its last reload went.
type policyHolder struct {
	mu       sync.Mutex
	version  int
	doc      *policy.Document
	defaults *policy.Document

	fileHash   string // hash of this server's valid file; "" when it has none
	fileMod    time.Time
	fileSize   int64
	lastErr    string
	lastOK     bool
	lastReload time.Time

	compiled      *placement.Compiled
	compiledDoc   *policy.Document
	compiledIndex uint64
}

// defaultPolicy is the policy in force before any is applied.
func defaultPolicy() *policy.Document {
	d, err := policy.Parse("default", []byte("apiVersion: herd/v1\nkind: Policy\n"))
	if err != nil {
		panic(fmt.Sprintf("the default policy does not validate: %v", err))
	}
	return d
}

// Policy returns the policy in force (defaults before any is applied).
func (s *Server) Policy() *policy.Document {
	inForce := s.node.FSM().Policy()
	p := &s.policy
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.defaults == nil {
		p.defaults = defaultPolicy()
	}
	if inForce == nil {
		return p.defaults
	}
	if p.doc != nil && p.version == inForce.Version {
		return p.doc
	}
	doc, err := policy.Parse(fmt.Sprintf("policy v%d", inForce.Version), inForce.YAML)
	if err != nil {
		// Validated before it was committed; a newer server's syntax an
		// older one cannot read keeps the last good one.
		s.log.Error("policy in force does not parse here", "version", inForce.Version, "err", err)
		if p.doc != nil {
			return p.doc
		}
		return p.defaults
	}
	p.doc, p.version = doc, inForce.Version
	return doc
}

func (s *Server) policyStatus() api.PolicyStatus {
	inForce := s.node.FSM().Policy()
	p := &s.policy
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := api.PolicyStatus{File: s.cfg.PolicyFile, FileHash: p.fileHash, LastReload: p.lastReload, ReloadOK: p.lastOK, ReloadErr: p.lastErr}
	if inForce != nil {
		ps.Version, ps.Hash = inForce.Version, inForce.Hash
	} else {
		if p.defaults == nil {
			p.defaults = defaultPolicy()
		}
		ps.Hash = p.defaults.Hash()
	}
	ps.Drift = p.fileHash != "" && p.fileHash != ps.Hash
	return ps
}

// errNoPolicyFile means the server has no policy file of its own.
var errNoPolicyFile = errors.New("no policy file")

// readPolicyFile reads and validates this server's policy file.
func (s *Server) readPolicyFile() (*policy.Document, error) {
	if s.cfg.PolicyFile == "" {
		return nil, errNoPolicyFile
	}
	if _, err := os.Stat(s.cfg.PolicyFile); errors.Is(err, os.ErrNotExist) {
		return nil, errNoPolicyFile
	}
	return policy.LoadFile(s.cfg.PolicyFile)
}

// ReloadPolicy reads this server's policy file again. A valid file that
// differs from the policy in force is applied cluster-wide (through the
// leader); an invalid one is refused, the policy in force stays, and an
// event and a metric say why.
func (s *Server) ReloadPolicy(ctx context.Context) error {
	doc, err := s.readPolicyFile()
	p := &s.policy
	p.mu.Lock()
	p.lastReload = time.Now().UTC()
	if fi, serr := os.Stat(s.cfg.PolicyFile); serr == nil {
		p.fileMod, p.fileSize = fi.ModTime(), fi.Size()
	}
	if err != nil {
		p.lastOK, p.lastErr = false, err.Error()
		if errors.Is(err, errNoPolicyFile) {
			p.lastOK, p.lastErr, p.fileHash = true, "", ""
		}
		p.mu.Unlock()
		if errors.Is(err, errNoPolicyFile) {
			return nil
		}
		s.metrics.PolicyReloads.WithLabelValues("error").Inc()
		s.log.Error("policy file refused; the policy in force stays", "file", s.cfg.PolicyFile, "err", err)
		s.recordEvent(ctx, cluster.NewEvent("policy.reload_failed", "server:"+s.cfg.NodeName, "", "",
			fmt.Sprintf("server %s refused its policy file %s; the policy in force stays: %v", s.cfg.NodeName, s.cfg.PolicyFile, err)))
		return err
	}
	p.fileHash, p.lastOK, p.lastErr = doc.Hash(), true, ""
	p.mu.Unlock()
	s.metrics.PolicyReloads.WithLabelValues("ok").Inc()
	if inForce := s.node.FSM().Policy(); inForce != nil && inForce.Hash == doc.Hash() {
		return nil
	}
	_, err = s.applyPolicy(ctx, doc, "file "+s.cfg.PolicyFile+" on "+s.cfg.NodeName, "server:"+s.cfg.NodeName, 0)
	return err
}

// applyPolicy puts doc in force, from the leader or through it.
func (s *Server) applyPolicy(ctx context.Context, doc *policy.Document, source, actor string, ifVersion int) (*api.PolicyInfo, error) {
	y, err := doc.YAML()
	if err != nil {
		return nil, fmt.Errorf("encode policy: %w", err)
	}
	if !s.node.IsLeader() {
		c := s.leaderClient()
		if c == nil {
			return nil, fmt.Errorf("apply policy: %w", raftnode.ErrNotLeader)
		}
		return c.ApplyPolicy(ctx, y, source)
	}
	ev := cluster.NewEvent("policy.applied", actor, "", "", fmt.Sprintf("policy %s applied from %s", shortHash(doc.Hash()), source))
	if _, err := s.node.Apply(ctx, &cluster.SetPolicy{YAML: y, Hash: doc.Hash(), Source: source, IfVersion: ifVersion, Time: ev.Time, Event: ev}); err != nil {
		return nil, err
	}
	return wire.Policy(s.node.FSM().Policy()), nil
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// recordEvent writes an event, through the leader when needed; failures
// are only logged.
func (s *Server) recordEvent(ctx context.Context, e cluster.Event) {
	if s.node.IsLeader() {
		if _, err := s.node.Apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{e}}); err != nil {
			s.log.Warn("record event", "err", err)
		}
		return
	}
	if c := s.leaderClient(); c != nil {
		if s.cfg.ServerToken() == "" {
			// Without the servers' internal token the leader cannot tell
			// this server from anyone else: it takes a note only.
			e = cluster.NewEvent(handlers.NoteType, "", e.Host, e.VM, e.Type+" ("+e.Actor+"): "+e.Message)
		}
		if err := c.AppendEvent(ctx, api.EventRequest{Type: e.Type, Host: e.Host, VM: e.VM, Message: e.Message, Actor: e.Actor}); err != nil {
			s.log.Warn("record event through the leader", "err", err)
		}
	}
}

// watchPolicyFile reloads the policy file when it changes.
func (s *Server) watchPolicyFile() {
	for s.ctx.Err() == nil {
		ctxsleep.Sleep(s.ctx, 2*time.Second)
		fi, err := os.Stat(s.cfg.PolicyFile)
		p := &s.policy
		p.mu.Lock()
		changed := err == nil && (!fi.ModTime().Equal(p.fileMod) || fi.Size() != p.fileSize)
		p.mu.Unlock()
		if changed {
			s.log.Info("policy file changed; reloading", "file", s.cfg.PolicyFile)
			_ = s.ReloadPolicy(s.ctx)
		}
	}
}

// placementOptions are the placement options the policy in force gives for
// automatic moves on st.
func (s *Server) placementOptions(doc *policy.Document, st *cluster.State, perTarget int) placement.Options {
	o := placement.Options{
		MemoryReserve: doc.Placement.MemoryReserve,
		MaxInFlightTo: perTarget,
		Policy:        s.compiled(doc, st),
	}
	if g := doc.Recovery.ReservedHostGroup; g != "" && o.Policy != nil {
		o.Reserved = map[string]bool{}
		for _, h := range o.Policy.HostsIn(g) {
			o.Reserved[h] = true
		}
	}
	return o
}

// compiled caches the policy compiled against a state: compiling 40,000
// VMs takes tens of milliseconds, and readers ask many times per index.
func (s *Server) compiled(doc *policy.Document, st *cluster.State) *placement.Compiled {
	p := &s.policy
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.compiled != nil && p.compiledDoc == doc && p.compiledIndex == st.Index {
		return p.compiled
	}
	p.compiled, p.compiledDoc, p.compiledIndex = placement.Compile(doc, st), doc, st.Index
	return p.compiled
}

// policyLoop reads this server's policy file once a leader is known (to
// report drift) and then reloads it whenever it changes.
func (s *Server) policyLoop() {
	for s.ctx.Err() == nil {
		if id, _ := s.node.Leader(); id != "" && s.leaderAPI() != "" {
			break
		}
		ctxsleep.Sleep(s.ctx, 200*time.Millisecond)
	}
	if s.ctx.Err() != nil {
		return
	}
	// Only a leader, on state it knows is current, puts a file in force
	// unasked (when no policy is yet): a follower's state may lag, and a
	// server restarted with an old file must not roll the policy back.
	s.notePolicyFile()
	s.watchPolicyFile()
}

// notePolicyFile records the file's hash (for drift) without applying it.
func (s *Server) notePolicyFile() {
	doc, err := s.readPolicyFile()
	p := &s.policy
	p.mu.Lock()
	defer p.mu.Unlock()
	if fi, serr := os.Stat(s.cfg.PolicyFile); serr == nil {
		p.fileMod, p.fileSize = fi.ModTime(), fi.Size()
	}
	p.lastReload = time.Now().UTC()
	switch {
	case errors.Is(err, errNoPolicyFile):
		p.fileHash, p.lastOK, p.lastErr = "", true, ""
	case err != nil:
		p.lastOK, p.lastErr = false, err.Error()
	default:
		p.fileHash, p.lastOK, p.lastErr = doc.Hash(), true, ""
	}
}
