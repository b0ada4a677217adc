// Package policysource is the policy as a server holds it: the policy
// in force (parsed once per version, defaults before any), this server's
// own policy file (its hash for drift, how its last reload went, a reload
// whenever it changes), putting a policy in force through the leader, and
// the placement options and compiled rules the policy gives.
package policysource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/raftnode"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/wire"
	"github.com/herd-project/herd/internal/ctxsleep"
	"github.com/herd-project/herd/metrics"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/placement"
)

// Node is the server's raft node as the policy source uses it
// (cluster.Node).
type Node interface {
	IsLeader() bool
	Leader() (id, addr string)
	Apply(ctx context.Context, cmd cluster.Command) (uint64, error)
}

// Deps are what the policy source works with.
type Deps struct {
	// File is this server's policy file ("" without one); Self its node
	// name.
	File string
	Self string
	Node Node
	// InForce is the policy the cluster has in force, nil before any
	// (cluster.FSM).
	InForce func() *cluster.Policy
	// LeaderClient is an API client for the leader, nil when there is none;
	// LeaderAPI the leader's API address, "" when unknown.
	LeaderClient func() *api.Client
	LeaderAPI    func() string
	// Record writes an event, through the leader when needed.
	Record  func(ctx context.Context, e cluster.Event)
	Metrics *metrics.Metrics
	Log     *slog.Logger
}

// Source caches the parsed policy in force and tracks this server's
// own policy file: its hash (for drift) and how its last reload went.
type Source struct {
	d Deps

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

// New is a server's policy source.
func New(d Deps) *Source { return &Source{d: d} }

// Default is the policy in force before any is applied.
func Default() *policy.Document {
	d, err := policy.Parse("default", []byte("apiVersion: herd/v1\nkind: Policy\n"))
	if err != nil {
		panic(fmt.Sprintf("the default policy does not validate: %v", err))
	}
	return d
}

// Policy returns the policy in force (defaults before any is applied).
func (p *Source) Policy() *policy.Document {
	inForce := p.d.InForce()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.defaults == nil {
		p.defaults = Default()
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
		p.d.Log.Error("policy in force does not parse here", "version", inForce.Version, "err", err)
		if p.doc != nil {
			return p.doc
		}
		return p.defaults
	}
	p.doc, p.version = doc, inForce.Version
	return doc
}

// Status is the policy in force and this server's file, for the API.
func (p *Source) Status() api.PolicyStatus {
	inForce := p.d.InForce()
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := api.PolicyStatus{File: p.d.File, FileHash: p.fileHash, LastReload: p.lastReload, ReloadOK: p.lastOK, ReloadErr: p.lastErr}
	if inForce != nil {
		ps.Version, ps.Hash = inForce.Version, inForce.Hash
	} else {
		if p.defaults == nil {
			p.defaults = Default()
		}
		ps.Hash = p.defaults.Hash()
	}
	ps.Drift = p.fileHash != "" && p.fileHash != ps.Hash
	return ps
}

// errNoPolicyFile means the server has no policy file of its own.
var errNoPolicyFile = errors.New("no policy file")

// readPolicyFile reads and validates this server's policy file.
func (p *Source) readPolicyFile() (*policy.Document, error) {
	if p.d.File == "" {
		return nil, errNoPolicyFile
	}
	if _, err := os.Stat(p.d.File); errors.Is(err, os.ErrNotExist) {
		return nil, errNoPolicyFile
	}
	return policy.LoadFile(p.d.File)
}

// Reload reads this server's policy file again. A valid file that
// differs from the policy in force is applied cluster-wide (through the
// leader); an invalid one is refused, the policy in force stays, and an
// event and a metric say why.
func (p *Source) Reload(ctx context.Context) error {
	doc, err := p.readPolicyFile()
	p.mu.Lock()
	p.lastReload = time.Now().UTC()
	if fi, serr := os.Stat(p.d.File); serr == nil {
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
		p.d.Metrics.PolicyReloads.WithLabelValues("error").Inc()
		p.d.Log.Error("policy file refused; the policy in force stays", "file", p.d.File, "err", err)
		p.d.Record(ctx, cluster.NewEvent("policy.reload_failed", "server:"+p.d.Self, "", "",
			fmt.Sprintf("server %s refused its policy file %s; the policy in force stays: %v", p.d.Self, p.d.File, err)))
		return err
	}
	p.fileHash, p.lastOK, p.lastErr = doc.Hash(), true, ""
	p.mu.Unlock()
	p.d.Metrics.PolicyReloads.WithLabelValues("ok").Inc()
	if inForce := p.d.InForce(); inForce != nil && inForce.Hash == doc.Hash() {
		return nil
	}
	_, err = p.Apply(ctx, doc, "file "+p.d.File+" on "+p.d.Self, "server:"+p.d.Self, 0)
	return err
}

// Apply puts doc in force, from the leader or through it.
func (p *Source) Apply(ctx context.Context, doc *policy.Document, source, actor string, ifVersion int) (*api.PolicyInfo, error) {
	y, err := doc.YAML()
	if err != nil {
		return nil, fmt.Errorf("encode policy: %w", err)
	}
	if !p.d.Node.IsLeader() {
		c := p.d.LeaderClient()
		if c == nil {
			return nil, fmt.Errorf("apply policy: %w", raftnode.ErrNotLeader)
		}
		return c.ApplyPolicy(ctx, y, source)
	}
	ev := cluster.NewEvent("policy.applied", actor, "", "", fmt.Sprintf("policy %s applied from %s", shortHash(doc.Hash()), source))
	if _, err := p.d.Node.Apply(ctx, &cluster.SetPolicy{YAML: y, Hash: doc.Hash(), Source: source, IfVersion: ifVersion, Time: ev.Time, Event: ev}); err != nil {
		return nil, err
	}
	return wire.Policy(p.d.InForce()), nil
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// watchPolicyFile reloads the policy file when it changes.
func (p *Source) watchPolicyFile(ctx context.Context) {
	for ctx.Err() == nil {
		ctxsleep.Sleep(ctx, 2*time.Second)
		fi, err := os.Stat(p.d.File)
		p.mu.Lock()
		changed := err == nil && (!fi.ModTime().Equal(p.fileMod) || fi.Size() != p.fileSize)
		p.mu.Unlock()
		if changed {
			p.d.Log.Info("policy file changed; reloading", "file", p.d.File)
			_ = p.Reload(ctx)
		}
	}
}

// Options are the placement options doc gives for automatic moves on st,
// with perTarget the limit of moves in flight to one host.
func (p *Source) Options(doc *policy.Document, st *cluster.State, perTarget int) placement.Options {
	o := placement.Options{
		MemoryReserve: doc.Placement.MemoryReserve,
		MaxInFlightTo: perTarget,
		Policy:        p.Compiled(doc, st),
	}
	if g := doc.Recovery.ReservedHostGroup; g != "" && o.Policy != nil {
		o.Reserved = map[string]bool{}
		for _, h := range o.Policy.HostsIn(g) {
			o.Reserved[h] = true
		}
	}
	return o
}

// Compiled is doc compiled against st, cached: compiling 40,000 VMs
// takes tens of milliseconds, and readers ask many times per index.
func (p *Source) Compiled(doc *policy.Document, st *cluster.State) *placement.Compiled {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.compiled != nil && p.compiledDoc == doc && p.compiledIndex == st.Index {
		return p.compiled
	}
	p.compiled, p.compiledDoc, p.compiledIndex = placement.Compile(doc, st), doc, st.Index
	return p.compiled
}

// Run reads this server's policy file once a leader is known (to report
// drift) and then reloads it whenever it changes, until ctx ends.
func (p *Source) Run(ctx context.Context) {
	for ctx.Err() == nil {
		if id, _ := p.d.Node.Leader(); id != "" && p.d.LeaderAPI() != "" {
			break
		}
		ctxsleep.Sleep(ctx, 200*time.Millisecond)
	}
	if ctx.Err() != nil {
		return
	}
	// Only a leader, on state it knows is current, puts a file in force
	// unasked (when no policy is yet): a follower's state may lag, and a
	// server restarted with an old file must not roll the policy back.
	p.notePolicyFile()
	p.watchPolicyFile(ctx)
}

// notePolicyFile records the file's hash (for drift) without applying it.
func (p *Source) notePolicyFile() {
	doc, err := p.readPolicyFile()
	p.mu.Lock()
	defer p.mu.Unlock()
	if fi, serr := os.Stat(p.d.File); serr == nil {
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
