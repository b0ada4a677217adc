// Package daemon assembles a Herd server: configuration, raft node, HTTP API,
// drivers and the controllers that run on the leader.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/raftnode"
	"github.com/herd-project/herd/daemon/alertmanager"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/daemon/controller"
	"github.com/herd-project/herd/daemon/controller/balance"
	"github.com/herd-project/herd/daemon/controller/health"
	"github.com/herd-project/herd/daemon/controller/inventory"
	"github.com/herd-project/herd/daemon/controller/ops"
	"github.com/herd-project/herd/daemon/controller/recovery"
	"github.com/herd-project/herd/daemon/handlers"
	"github.com/herd-project/herd/daemon/httpapi"
	"github.com/herd-project/herd/daemon/lease"
	"github.com/herd-project/herd/daemon/maintenance"
	"github.com/herd-project/herd/daemon/membership"
	"github.com/herd-project/herd/daemon/policysource"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/metrics"
	"github.com/herd-project/herd/policy"
)

// DriverFactory opens a driver from its config. Tests and dev mode may
// replace the default.
type DriverFactory func(ctx context.Context, dc config.Driver, log *slog.Logger) (drivers.Driver, error)

// Server is one running herd server.
type Server struct {
	cfg     *config.Server
	log     *slog.Logger
	node    *raftnode.Node
	reg     *prometheus.Registry
	metrics *metrics.Metrics
	drivers *driverSet

	listener net.Listener
	http     *http.Server
	apiAddr  string // advertised base URL

	// tokens is nil without auth (dev mode); tls nil without TLS.
	tokens    *config.Tokens
	tls       *config.TLSBundle
	transport *http.Transport
	limiter   *httpapi.WriteLimiter

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// ctrlWG counts the leader's controllers: shutdown waits for their
	// in-flight raft writes before it stops raft.
	ctrlWG sync.WaitGroup

	// left is closed once this server has left the cluster.
	left     chan struct{}
	leftOnce sync.Once

	leaderMu   sync.Mutex
	controlCtx context.CancelFunc
	// controllers are started on the leader, in order.
	controllers []Controller
	ops         *ops.Controller
	maint       *maintenance.Service
	syncers     []*inventory.Controller
	balancer    *balance.Controller
	members     *membership.Controller
	forming     *membership.Forming
	catchUp     catchUp
	// leaderCurrent: this server leads and has applied what was committed
	// before its term (its barrier passed); reads and /readyz are current.
	leaderCurrent atomic.Bool
	leases        *lease.Table
	// devFence powers off a simulator host (dev mode only; nil otherwise).
	devFence func(host string) error
	// devCrash makes a simulator host stop answering (true) or answer
	// again (false); dev mode only.
	devCrash func(host string, crash bool) error

	failover failoverCache
	gossip   *membership.Gossip
	policy   *policysource.Source
	// clock is the time windows are read against (tests set it).
	clock clock

	amMetrics *metrics.Alertmanager
	webhook   *alertmanager.Webhook

	// onClose runs at Shutdown (dev mode's simulator).
	onClose []func()
}

// Controller is work the leader does while it leads. Run returns when ctx is
// cancelled (leadership lost or shutdown).
type Controller interface {
	Name() string
	Run(ctx context.Context)
}

// Options adjusts a server beyond its config (tests, dev mode).
type Options struct {
	Logger        *slog.Logger
	DriverFactory DriverFactory
	// Raft timing for tests; zero keeps the defaults.
	RaftHeartbeat time.Duration
	RaftElection  time.Duration
	RaftLease     time.Duration
	// RaftLogStore wraps the raft log store when set (tests play a slow
	// disk with it).
	RaftLogStore func(raft.LogStore) raft.LogStore
	// WrapOpsRaft wraps the operations controller's raft writes when set
	// (tests hold a step's commit with it).
	WrapOpsRaft func(controller.Applier) controller.Applier
}

// NewServer opens the raft node and the API listener. Nothing runs until Start.
func NewServer(cfg *config.Server, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.DriverFactory == nil {
		opts.DriverFactory = openDriver
	}
	if cfg.Tokens() == nil && cfg.API.TokensFile != "" {
		if err := cfg.LoadTokens(); err != nil {
			return nil, err
		}
	}
	var bundle *config.TLSBundle
	scheme := "http"
	if cfg.TLS.Enabled() {
		b, err := cfg.TLS.Load()
		if err != nil {
			return nil, err
		}
		bundle, scheme = b, "https"
	}
	ln, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return nil, fmt.Errorf("api listen on %s: %w", cfg.API.Listen, err)
	}
	apiAddr := cfg.API.Advertise
	if apiAddr == "" {
		apiAddr = scheme + "://" + advertiseHostPort(ln.Addr().String())
	}
	var raftTLS *tls.Config
	if bundle != nil {
		raftTLS = bundle.Raft
	}
	node, err := raftnode.Open(raftnode.Config{
		ID:                 cfg.NodeName,
		DataDir:            cfg.DataDir,
		Bind:               cfg.Raft.Listen,
		Advertise:          cfg.Raft.Advertise,
		SnapshotThreshold:  cfg.Raft.SnapshotThreshold,
		HeartbeatTimeout:   opts.RaftHeartbeat,
		ElectionTimeout:    opts.RaftElection,
		LeaderLeaseTimeout: opts.RaftLease,
		Logger:             log,
		TLS:                raftTLS,
		WrapLogStore:       opts.RaftLogStore,
	})
	if err != nil {
		ln.Close()
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      log,
		node:     node,
		reg:      prometheus.NewRegistry(),
		listener: ln,
		apiAddr:  strings.TrimRight(apiAddr, "/"),
		left:     make(chan struct{}),
		tokens:   cfg.Tokens(),
		tls:      bundle,
		limiter:  httpapi.NewWriteLimiter(cfg.API.WriteRate, cfg.API.WriteBurst),
	}
	if bundle != nil {
		s.transport = newTLSTransport(bundle.Client)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.gossip = &membership.Gossip{}
	s.forming = membership.NewForming(membership.FormDeps{Self: cfg.NodeName, APIAddr: s.apiAddr, Scheme: s.apiScheme(), Dev: cfg.Dev,
		BootstrapExpect: cfg.Raft.BootstrapExpect, Join: cfg.Raft.Join, Node: node, State: node.FSM(), Client: s.apiClient, Gossip: s.gossip,
		LeaderAPI: s.leaderAPI, Register: s.registerSelf, Log: log})
	s.leases = lease.New()
	s.metrics = metrics.New(s.reg, metrics.Sources{State: s.stateSample, Raft: s.raftSample, InFlight: func() int { return s.ops.InFlight() }, Policy: s.policySample,
		Gossip: s.gossip.States})
	s.policy = policysource.New(policysource.Deps{File: cfg.PolicyFile, Self: cfg.NodeName, Node: node, InForce: node.FSM().Policy,
		LeaderClient: s.leaderClient, LeaderAPI: s.leaderAPI, Record: s.recordEvent, Metrics: s.metrics, Log: log})
	s.drivers = newDriverSet(cfg.Drivers, opts.DriverFactory, log)
	var opsRaft controller.Applier = node
	if opts.WrapOpsRaft != nil {
		opsRaft = opts.WrapOpsRaft(opsRaft)
	}
	s.ops = ops.New(ops.Deps{State: node.FSM(), Raft: opsRaft, Drivers: s.drivers, Policy: s.Policy, Options: s.policy.Options,
		Self: cfg.NodeName, InventoryTimeout: cfg.Inventory.Timeout, Metrics: s.metrics, Log: log})
	s.maint = maintenance.New(maintenance.Deps{State: node.FSM(), Raft: node, Ledger: s.ops, Policy: s.Policy, Options: s.policy.Options,
		NewOpID: newOpID})
	syncDeps := inventory.Deps{State: node.FSM(), Raft: node, Drivers: s.drivers, Metrics: s.metrics, Log: log,
		Interval: cfg.Inventory.SyncInterval, Timeout: cfg.Inventory.Timeout}
	for _, dc := range cfg.Drivers {
		sc := inventory.New(syncDeps, dc.Name)
		s.syncers = append(s.syncers, sc)
		s.controllers = append(s.controllers, sc)
	}
	s.balancer = balance.New(balance.Deps{State: node.FSM(), Raft: node, Ledger: s.ops, Clock: &s.clock, Policy: s.Policy,
		Options: s.policy.Options, Compiled: s.policy.Compiled, HostCPU: s.hostCPU, Frozen: frozenHosts, Busy: vmBusy, NewOpID: newOpID,
		Record: s.recordEvent, Metrics: s.metrics, Log: log})
	s.members = membership.New(membership.Deps{Self: cfg.NodeName, Node: node, Raft: node.Raft(), State: node.FSM(), Client: s.apiClient,
		ServerStabilization: cfg.Raft.ServerStabilization, DeadServerTimeout: cfg.Raft.DeadServerTimeout, Done: s.ctx, Log: log})
	healthCtl := health.New(health.Deps{State: node.FSM(), Raft: node, Drivers: s.drivers, Leases: s.leases, Policy: s.Policy,
		Gossip: s.gossip.Members, HostQuery: s.hostQuery, Evacuate: s.maint.EvacuateDegraded, Metrics: s.metrics, Log: log})
	recoveryCtl := recovery.New(recovery.Deps{State: node.FSM(), Raft: node, Drivers: s.drivers, Leases: s.leases, Policy: s.Policy,
		Compiled: s.policy.Compiled, DevFence: s.fenceDevHost, NewOpID: newOpID, Metrics: s.metrics, Log: log})
	s.controllers = append(s.controllers, s.members, s.ops, s.balancer, healthCtl, recoveryCtl)
	s.controllers = append(s.controllers, s.newSilencer())
	s.controllers = append(s.controllers, newRolloutController(s))
	s.http = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelWarn),
	}
	if bundle != nil {
		s.http.TLSConfig = bundle.API
	}
	return s, nil
}

// advertiseHostPort replaces a wildcard listen host by loopback.
func advertiseHostPort(addr string) string {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
		h = "127.0.0.1"
	}
	return net.JoinHostPort(h, p)
}

// Start serves the API, forms or joins the cluster, and follows leadership.
func (s *Server) Start() error {
	if err := s.gossip.Start(s.ctx, &s.wg, s.cfg.Gossip, s.cfg.NodeName, s.apiAddr, s.metrics, s.log); err != nil {
		return err
	}
	s.wg.Add(4)
	go func() {
		defer s.wg.Done()
		if err := s.serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("api server stopped", "err", err)
		}
	}()
	go func() { defer s.wg.Done(); s.followLeadership() }()
	go func() { defer s.wg.Done(); s.forming.Run(s.ctx) }()
	go func() { defer s.wg.Done(); s.policy.Run(s.ctx) }()
	s.log.Info("herd server started", "node", s.cfg.NodeName, "api", s.apiAddr, "raft", s.node.Addr())
	return nil
}

// APIAddr is the advertised API base URL.
func (s *Server) APIAddr() string { return s.apiAddr }

// Node is the server's raft node.
func (s *Server) Node() *raftnode.Node { return s.node }

// Registry is the server's metrics registry.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Shutdown stops controllers, the API and raft, in that order: requests
// and controller steps in flight finish their raft writes (within ctx)
// before raft stops. State stays in the data dir.
func (s *Server) Shutdown(ctx context.Context) error {
	s.cancel()
	s.stopControllers()
	herr := s.http.Shutdown(ctx)
	werr := waitCtx(ctx, &s.ctrlWG, "controllers")
	rerr := s.node.Shutdown()
	_ = s.gossip.Leave(2 * time.Second)
	s.wg.Wait()
	s.drivers.Close()
	for _, f := range s.onClose {
		f()
	}
	return errors.Join(herr, werr, rerr)
}

// waitCtx waits for wg, or until ctx ends.
func waitCtx(ctx context.Context, wg *sync.WaitGroup, what string) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
	}
}

// Left is closed once this server has left the cluster (POST
// /v1/cluster/leave): the process should stop.
func (s *Server) Left() <-chan struct{} { return s.left }

// followLeadership starts the controllers when this server becomes leader
// and stops them the moment it is not: a leader that loses its quorum stops
// acting at once.
func (s *Server) followLeadership() {
	ch := s.node.LeaderCh()
	for {
		select {
		case <-s.ctx.Done():
			return
		case isLeader := <-ch:
			if isLeader {
				s.startControllers()
			} else {
				s.stopControllers()
			}
		}
	}
}

func (s *Server) startControllers() {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	if s.controlCtx != nil {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	s.controlCtx = cancel
	s.leaderCurrent.Store(false)
	s.leases.Reset(time.Now())
	s.ctrlWG.Add(1)
	go func() {
		defer s.ctrlWG.Done()
		// Act only on state that includes everything committed before.
		if err := s.node.Barrier(30 * time.Second); err != nil {
			s.log.Warn("leader barrier failed; giving up leadership duties", "err", err)
			return
		}
		s.leaderCurrent.Store(true)
		if err := s.registerSelf(ctx); err != nil {
			s.log.Warn("register server", "err", err)
		}
		if _, err := s.node.Apply(ctx, &cluster.SetEventRetention{Max: s.cfg.Events.Retention}); err != nil {
			s.log.Warn("set event retention", "err", err)
		}
		// A new cluster takes the leader's policy file before anything runs.
		if s.node.FSM().Policy() == nil {
			_ = s.ReloadPolicy(ctx)
		}
		s.log.Info("leadership gained: starting controllers", "controllers", len(s.controllers))
		for _, c := range s.controllers {
			c := c
			s.ctrlWG.Add(1)
			go func() {
				defer s.ctrlWG.Done()
				c.Run(ctx)
			}()
		}
	}()
}

func (s *Server) stopControllers() {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	if s.controlCtx != nil {
		s.log.Info("leadership lost: stopping controllers")
		s.controlCtx()
		s.controlCtx = nil
		s.leaderCurrent.Store(false)
	}
}

func (s *Server) self() cluster.Server {
	return cluster.Server{ID: s.cfg.NodeName, RaftAddr: s.node.Addr(), APIAddr: s.apiAddr}
}

// registerSelf writes this server's addresses into the state (leader only).
func (s *Server) registerSelf(ctx context.Context) error {
	self := s.self()
	var cur *cluster.Server
	s.node.FSM().Read(func(st *cluster.State) { cur = st.Servers[self.ID] })
	if cur != nil && *cur == self {
		return nil
	}
	_, err := s.node.Apply(ctx, &cluster.RegisterServer{Server: self})
	return err
}

// leaderAPI returns the leader's API base URL, empty when unknown.
func (s *Server) leaderAPI() string {
	id, _ := s.node.Leader()
	if id == "" {
		return ""
	}
	if id == s.cfg.NodeName {
		return s.apiAddr
	}
	var addr string
	s.node.FSM().Read(func(st *cluster.State) {
		if sv := st.Servers[id]; sv != nil {
			addr = sv.APIAddr
		}
	})
	return addr
}

func (s *Server) raftSample() metrics.RaftSample {
	r := s.node.Raft()
	id, _ := s.node.Leader()
	members, _ := s.node.Members()
	rs := metrics.RaftSample{
		IsLeader: s.node.IsLeader(), HasLeader: id != "", State: r.State().String(), Servers: len(members),
		CommitIndex: r.CommitIndex(), AppliedIndex: r.AppliedIndex(),
	}
	if !rs.IsLeader {
		if lc := r.LastContact(); !lc.IsZero() {
			rs.LastContactSecs = time.Since(lc).Seconds()
		}
	}
	_, _, stale := s.freshness()
	rs.Ready = rs.HasLeader && stale == ""
	rs.FailureTolerance, rs.HasTolerance = s.members.FailureTolerance()
	return rs
}

func (s *Server) policySample() metrics.PolicySample {
	ps := s.policy.Status()
	out := metrics.PolicySample{Version: ps.Version, Drift: ps.Drift, LastReloadOK: ps.ReloadOK}
	if !ps.LastReload.IsZero() {
		out.LastReloadTime = float64(ps.LastReload.UnixNano()) / 1e9
	}
	return out
}

// leaderClient is an API client for the leader, nil when there is none.
func (s *Server) leaderClient() *api.Client {
	addr := s.leaderAPI()
	if addr == "" {
		return nil
	}
	c, err := s.apiClient(addr, 10*time.Second)
	if err != nil {
		return nil
	}
	return c
}

// apiClient is a client for another server's API, with this server's
// internal token and TLS settings.
func (s *Server) apiClient(addr string, timeout time.Duration) (*api.Client, error) {
	c, err := api.NewClient(addr, s.cfg.ServerToken())
	if err != nil {
		return nil, err
	}
	c.HTTP.Timeout = timeout
	c.HTTP.Transport = s.clientTransport()
	return c, nil
}

// serve serves the API, over TLS when configured.
func (s *Server) serve() error {
	if s.tls != nil {
		return s.http.ServeTLS(s.listener, "", "")
	}
	return s.http.Serve(s.listener)
}

// apiScheme is how other servers' APIs are reached.
func (s *Server) apiScheme() string {
	if s.tls != nil {
		return "https"
	}
	return "http"
}

// SyncInventory reads one driver's inventory and writes what changed, now.
// Leader only.
func (s *Server) SyncInventory(ctx context.Context, driver string) (*inventory.Result, error) {
	for _, sc := range s.syncers {
		if sc.Driver() == driver {
			return sc.Sync(ctx)
		}
	}
	return nil, fmt.Errorf("no driver %q", driver)
}

// fenceDevHost powers off a dev simulator host (fencing type dev).
func (s *Server) fenceDevHost(host string) error {
	if s.devFence == nil {
		return fmt.Errorf("dev fencing works in herd server -dev only: %w", recovery.ErrUnavailable)
	}
	return s.devFence(host)
}

// Policy returns the policy in force (defaults before any is applied).
func (s *Server) Policy() *policy.Document { return s.policy.Policy() }

// ReloadPolicy reads this server's policy file again. A valid file that
// differs from the policy in force is applied cluster-wide (through the
// leader); an invalid one is refused, the policy in force stays, and an
// event and a metric say why.
func (s *Server) ReloadPolicy(ctx context.Context) error { return s.policy.Reload(ctx) }

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
