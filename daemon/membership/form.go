package membership

import (
	"context"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/gossip"
	"github.com/herd-project/herd/cluster/raftnode"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/internal/ctxsleep"
)

// FormNode is the server's raft node as forming a cluster uses it
// (raftnode.Node).
type FormNode interface {
	HasState() (bool, error)
	Bootstrap(servers map[string]string) error
	Members() ([]raftnode.Member, error)
	Addr() string
	IsLeader() bool
}

// FormDeps are what forming a cluster works with.
type FormDeps struct {
	// Self is this server's node name; APIAddr its advertised API address.
	Self    string
	APIAddr string
	// Scheme is how other servers' APIs are reached (http or https).
	Scheme string
	// Dev: a dev server bootstraps alone. BootstrapExpect and Join are
	// raft.bootstrap_expect and raft.join.
	Dev             bool
	BootstrapExpect int
	Join            []string
	Node            FormNode
	State           State
	// Client is a client for another server's API.
	Client func(addr string, timeout time.Duration) (*api.Client, error)
	// Gossip lists the other servers gossip knows of.
	Gossip *Gossip
	// LeaderAPI is the leader's API address, "" when unknown.
	LeaderAPI func() string
	// Register writes this server's addresses into the state (leader only).
	Register func(ctx context.Context) error
	Log      *slog.Logger
}

// Forming brings a server into a cluster and keeps its registration in
// the state current.
type Forming struct {
	d FormDeps

	mu         sync.Mutex
	discovered map[string]api.Self
}

// NewForming is how a server forms or joins its cluster.
func NewForming(d FormDeps) *Forming {
	return &Forming{d: d, discovered: map[string]api.Self{}}
}

// Run brings this server into a cluster: a dev or single server bootstraps
// itself; with bootstrap_expect N the servers find each other through their
// join addresses and all bootstrap with the same N members; otherwise the
// server asks a member to add it. A server with state only keeps its
// registration current.
func (f *Forming) Run(ctx context.Context) {
	has, err := f.d.Node.HasState()
	if err != nil {
		f.d.Log.Error("read raft state", "err", err)
		return
	}
	switch {
	case has:
	case f.d.Dev || f.d.BootstrapExpect == 1:
		if err := f.d.Node.Bootstrap(map[string]string{f.d.Self: f.d.Node.Addr()}); err != nil {
			f.d.Log.Error("bootstrap", "err", err)
		}
	case f.d.BootstrapExpect > 1:
		f.discover(ctx)
	default:
		f.joinLoop(ctx)
	}
	f.keepRegistered(ctx)
}

// clustered reports whether this server is in a raft configuration.
func (f *Forming) clustered() bool {
	m, err := f.d.Node.Members()
	return err == nil && len(m) > 0
}

// Info is this server as forming a cluster shows it.
func (f *Forming) Info() api.Self {
	return api.Self{ID: f.d.Self, RaftAddr: f.d.Node.Addr(), APIAddr: f.d.APIAddr, Clustered: f.clustered()}
}

// joinClients are clients for the raft.join addresses and for the other
// servers gossip knows of: servers that share only a gossip join list
// find each other's APIs there.
func (f *Forming) joinClients() []*api.Client {
	var out []*api.Client
	seen := map[string]bool{}
	add := func(a, scheme string) {
		addr, err := config.NormalizeAPIAddrScheme(a, scheme)
		if err != nil || seen[addr] || addr == f.d.APIAddr {
			return
		}
		seen[addr] = true
		if c, err := f.d.Client(addr, 3*time.Second); err == nil {
			out = append(out, c)
		}
	}
	for _, j := range f.d.Join {
		add(j, f.d.Scheme)
	}
	for _, m := range f.d.Gossip.Members() {
		if m.Meta.Role == gossip.RoleServer && m.State == "alive" && m.Name != f.d.Self && m.Meta.API != "" {
			add(m.Meta.API, f.d.Scheme)
		}
	}
	return out
}

// discover polls the join addresses until bootstrap_expect servers are
// known, then bootstraps; it joins instead when it finds a formed cluster.
func (f *Forming) discover(ctx context.Context) {
	expect := f.d.BootstrapExpect
	for ctx.Err() == nil && !f.clustered() {
		for _, c := range f.joinClients() {
			info, err := c.Cluster(ctx)
			if err != nil {
				continue
			}
			if info.Leader != "" {
				if f.join(ctx, c) {
					return
				}
				continue
			}
			f.mu.Lock()
			for _, p := range append(info.Discovered, info.Self) {
				if p.ID != "" && p.ID != f.d.Self {
					f.discovered[p.ID] = p
				}
			}
			n := len(f.discovered) + 1
			f.mu.Unlock()
			if n >= expect {
				servers := map[string]string{f.d.Self: f.d.Node.Addr()}
				for _, p := range f.Discovered() {
					if len(servers) < expect {
						servers[p.ID] = p.RaftAddr
					}
				}
				f.d.Log.Info("bootstrapping cluster", "servers", servers)
				if err := f.d.Node.Bootstrap(servers); err != nil {
					f.d.Log.Error("bootstrap", "err", err)
				}
				return
			}
		}
		ctxsleep.Sleep(ctx, time.Second)
	}
}

// discoveredList is the servers found so far, by id, so every server of a
// new cluster picks the same ones.
func (f *Forming) Discovered() []api.Self {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]api.Self, 0, len(f.discovered))
	for _, p := range f.discovered {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (f *Forming) joinLoop(ctx context.Context) {
	for ctx.Err() == nil && !f.clustered() {
		for _, c := range f.joinClients() {
			if f.join(ctx, c) {
				return
			}
		}
		ctxsleep.Sleep(ctx, 2*time.Second)
	}
}

func (f *Forming) join(ctx context.Context, c *api.Client) bool {
	me := f.Info()
	err := c.Do(ctx, http.MethodPost, "/v1/cluster/join", nil, api.JoinRequest{ID: me.ID, RaftAddr: me.RaftAddr, APIAddr: me.APIAddr}, nil)
	if err != nil {
		f.d.Log.Warn("join cluster", "via", c.Base, "err", err)
		return false
	}
	f.d.Log.Info("joined cluster", "via", c.Base)
	return true
}

// keepRegistered makes sure the state holds this server's current
// addresses, so followers can forward writes to whichever server leads.
func (f *Forming) keepRegistered(ctx context.Context) {
	for ctx.Err() == nil {
		self := cluster.Server{ID: f.d.Self, RaftAddr: f.d.Node.Addr(), APIAddr: f.d.APIAddr}
		var cur *cluster.Server
		f.d.State.Read(func(st *cluster.State) { cur = st.Servers[self.ID] })
		if cur == nil || *cur != self {
			if f.d.Node.IsLeader() {
				_ = f.d.Register(ctx)
			} else if addr := f.d.LeaderAPI(); addr != "" {
				if c, err := f.d.Client(addr, 3*time.Second); err == nil {
					f.join(ctx, c)
				}
			} else {
				// No leader heard of (our raft address may have changed):
				// any member forwards the join to the leader.
				for _, c := range f.joinClients() {
					if f.join(ctx, c) {
						break
					}
				}
			}
		}
		ctxsleep.Sleep(ctx, 2*time.Second)
	}
}
