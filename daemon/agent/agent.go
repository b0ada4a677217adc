// Package agent is herd agent, the process that runs on each hypervisor
// host: a gossip member that reports its host's local health and holds a
// lease from the servers, and stops the host's VMs itself (self-fencing)
// when it can no longer renew that lease. The lease's server side is in
// package daemon.
package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/herd-project/herd/cluster/gossip"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/drivers/libvirt"
	"github.com/herd-project/herd/internal/ctxsleep"
)

// Options are what a caller can pass besides the config.
type Options struct {
	Logger *slog.Logger
	// Hypervisor replaces the local hypervisor the config names (tests).
	Hypervisor drivers.Driver
	// Notify sends a systemd notify state (READY=1, WATCHDOG=1,
	// STOPPING=1); nil sends nothing.
	Notify func(state string)
	// Watchdog is how often systemd wants WATCHDOG=1 (0: not watched).
	Watchdog time.Duration
	// GossipFast shortens gossip intervals (loopback tests).
	GossipFast bool
	// GossipDrop and Transport make the agent's network lossy (tests of
	// short losses): gossip drops while GossipDrop says so, and API calls
	// go through Transport.
	GossipDrop func() bool
	Transport  http.RoundTripper
}

// Agent runs on a hypervisor host. It is a gossip member that reports its
// host's local health, and it holds a lease from the servers. When it
// cannot renew the lease for its TTL it stops the host's VMs through the
// local hypervisor (self-fencing): by the time the servers count the lease
// as expired (TTL plus a margin, on their side) nothing runs here any more,
// so the VMs can be recreated elsewhere without running twice. If it cannot
// stop them it stops feeding the systemd watchdog, and systemd restarts it
// (and, per herd-agent.service, resets the machine when that keeps failing).
type Agent struct {
	cfg  *config.Agent
	opts Options
	log  *slog.Logger
	hv   drivers.Driver
	tls  *tls.Config

	gossip *gossip.Gossip

	mu sync.Mutex
	// ttl is the lease the agent holds itself to; zero until the servers
	// named one. armed: the servers may count this host's lease expiry as
	// fencing (from the first request that offered a TTL on).
	ttl   time.Duration
	armed bool
	until time.Time // the lease ends (monotonic clock)
	// fenced: the lease ran out and the host's VMs were stopped.
	fenced    bool
	fencedAt  time.Time
	fenceErr  error
	stopped   int
	hvState   string
	preferred string // the server that answered last
	// started is when Run started (sent with every heartbeat).
	started time.Time
}

// agentState is what the state file keeps across restarts.
type agentState struct {
	Armed    bool          `json:"armed"`
	TTL      time.Duration `json:"ttl"`
	Deadline time.Time     `json:"deadline"` // wall clock
}

// New builds an agent; Run starts it.
func New(cfg *config.Agent, opts Options) (*Agent, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	a := &Agent{cfg: cfg, opts: opts, log: log.With("agent", cfg.NodeName, "host", cfg.Host), hv: opts.Hypervisor}
	if cfg.TLS.CAFile != "" || cfg.TLS.CertFile != "" {
		t, err := api.ClientTLS(cfg.TLS.CAFile, cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("agent tls: %w", err)
		}
		a.tls = t
	}
	if a.hv == nil {
		d, err := libvirt.New(context.Background(), libvirt.Config{Hosts: []libvirt.HostConfig{{Name: cfg.Host, URI: cfg.Hypervisor.URI}}}, a.log)
		if err != nil {
			return nil, fmt.Errorf("agent hypervisor %s: %w", cfg.Hypervisor.URI, err)
		}
		a.hv = d
	}
	return a, nil
}

// Run runs the agent until ctx ends, then stops cleanly: it releases its
// lease (or, when no server hears it, stops the VMs it can no longer vouch
// for) and leaves gossip.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	a.started = time.Now().UTC()
	a.mu.Unlock()
	if err := a.loadState(); err != nil {
		return err
	}
	if a.expired(time.Now()) {
		a.log.Error("the lease ran out while the agent was down: stopping this host's VMs first")
		a.selfFence(ctx)
	}
	var keys [][]byte
	if a.cfg.Gossip.KeyringFile != "" {
		k, err := gossip.ReadKeyring(a.cfg.Gossip.KeyringFile)
		if err != nil {
			return err
		}
		keys = k
	}
	g, err := gossip.Start(gossip.Config{Name: a.cfg.NodeName, Bind: a.cfg.Gossip.Listen, Advertise: a.cfg.Gossip.Advertise,
		Keys: keys, Meta: a.meta("ok"), Profile: a.cfg.Gossip.Profile, Fast: a.opts.GossipFast, Drop: a.opts.GossipDrop, Logger: a.log})
	if err != nil {
		return fmt.Errorf("agent gossip: %w", err)
	}
	a.gossip = g
	a.notify("READY=1")
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context){a.joinLoop, a.renewLoop, a.heartbeatLoop, a.fenceLoop, a.hypervisorLoop, a.watchdogLoop, a.trimLoop} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(ctx)
		}()
	}
	<-ctx.Done()
	wg.Wait()
	a.notify("STOPPING=1")
	a.stop()
	return nil
}

// Gossip is the agent's gossip member: nil until Run started it.
func (a *Agent) Gossip() *gossip.Gossip { return a.gossip }

func (a *Agent) meta(hv string) gossip.MemberMeta {
	return gossip.MemberMeta{Role: gossip.RoleAgent, Host: a.cfg.Host, Hypervisor: hv}
}

func (a *Agent) notify(state string) {
	if a.opts.Notify != nil {
		a.opts.Notify(state)
	}
}

// stop releases the lease so that the servers stop counting on it. When no
// server hears the release, the lease may still be armed: the host's VMs
// are stopped, since nothing here will stop them once it runs out.
func (a *Agent) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a.mu.Lock()
	armed := a.armed
	a.mu.Unlock()
	if armed {
		if err := a.eachServer(ctx, func(c *api.Client) error { return c.ReleaseLease(ctx, a.cfg.Host) }); err != nil {
			a.log.Error("could not release the lease; stopping this host's VMs so that none runs twice", "err", err)
			a.selfFence(ctx)
		} else {
			a.mu.Lock()
			a.armed, a.until = false, time.Time{}
			a.mu.Unlock()
			a.log.Info("lease released")
		}
		a.saveState()
	}
	if a.gossip != nil {
		_ = a.gossip.Leave(2 * time.Second)
		_ = a.gossip.Shutdown()
	}
	_ = a.hv.Close()
}

// joinLoop joins gossip through the configured members, and again after a
// partition that left it with no server alive (gossip.Gossip.KeepJoined).
func (a *Agent) joinLoop(ctx context.Context) {
	if len(a.cfg.Gossip.Join) == 0 {
		return
	}
	a.gossip.KeepJoined(ctx, a.cfg.Gossip.Join, a.log)
}

// renewLoop renews the lease three times per TTL (every second until the
// servers named one), and every half second after a failure: a short loss
// costs no more than its own length.
func (a *Agent) renewLoop(ctx context.Context) {
	for ctx.Err() == nil {
		ok := a.renew(ctx)
		a.mu.Lock()
		every := time.Second
		if a.ttl > 0 {
			every = a.ttl / 3
		}
		a.mu.Unlock()
		if !ok {
			every = min(every, 500*time.Millisecond)
		}
		ctxsleep.Sleep(ctx, every)
	}
}

// renew asks one server after another until one renews the lease. The
// lease runs from when the request was sent, never from the answer.
func (a *Agent) renew(ctx context.Context) bool {
	a.mu.Lock()
	offer := a.ttl
	sent := time.Now()
	if offer > 0 && !a.armed {
		// From this request on the servers may arm: hold to it first.
		a.armed, a.until = true, sent.Add(offer)
		a.saveStateLocked()
	}
	a.mu.Unlock()
	timeout := 2 * time.Second
	if offer > 0 {
		timeout = min(timeout, offer/3)
	}
	var got *api.Lease
	err := a.eachServer(ctx, func(c *api.Client) error {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		l, err := c.RenewLease(rctx, a.cfg.Host, api.LeaseRequest{Agent: a.cfg.NodeName, TTL: offer})
		got = l
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("lease not renewed", "err", err)
		}
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.preferred = got.Leader
	if offer > 0 && got.Armed {
		if end := sent.Add(min(offer, got.TTL)); end.After(a.until) {
			a.until = end
		}
		if a.fenced {
			a.log.Info("lease renewed again after self-fencing; the VMs stay stopped (the servers recreated them elsewhere)")
			a.fenced, a.fenceErr = false, nil
		}
	}
	a.ttl = got.TTL
	a.saveStateLocked()
	return true
}

// serverAddrs lists the known servers' API addresses, the one that
// answered last first.
func (a *Agent) serverAddrs() []string {
	var addrs []string
	seen := map[string]bool{}
	add := func(s string) {
		if u, err := config.NormalizeAPIAddr(s); err == nil && !seen[u] {
			seen[u] = true
			addrs = append(addrs, u)
		}
	}
	a.mu.Lock()
	preferred := a.preferred
	a.mu.Unlock()
	if a.gossip != nil {
		for _, m := range a.gossip.Members() {
			if m.Meta.Role == gossip.RoleServer && m.State == "alive" && m.Meta.API != "" && m.Name == preferred {
				add(m.Meta.API)
			}
		}
	}
	for _, s := range a.cfg.Servers {
		add(s)
	}
	if a.gossip != nil {
		for _, m := range a.gossip.Members() {
			if m.Meta.Role == gossip.RoleServer && m.State == "alive" && m.Meta.API != "" {
				add(m.Meta.API)
			}
		}
	}
	return addrs
}

// eachServer calls fn with a client for each known server, the one that
// answered last first, until one succeeds.
func (a *Agent) eachServer(ctx context.Context, fn func(*api.Client) error) error {
	addrs := a.serverAddrs()
	if len(addrs) == 0 {
		return errors.New("no server known")
	}
	var errs []error
	for _, addr := range addrs {
		if ctx.Err() != nil {
			break
		}
		c, err := a.client(addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := fn(c); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		return nil
	}
	if len(errs) == 0 {
		// Stopped before asking any: errors.Join of nothing is nil, which
		// would read as an answer.
		return fmt.Errorf("no server asked: %w", context.Cause(ctx))
	}
	return errors.Join(errs...)
}

// client is an API client of the server at addr, as the agent talks to
// the servers: its token, TLS and transport.
func (a *Agent) client(addr string) (*api.Client, error) {
	c, err := api.NewClient(addr, a.cfg.Token())
	if err != nil {
		return nil, err
	}
	if a.tls != nil {
		c.UseTLS(a.tls)
	}
	if a.opts.Transport != nil {
		c.HTTP.Transport = a.opts.Transport
	}
	c.HTTP.Timeout = 5 * time.Second
	return c, nil
}

// selfFenceLead is how much of its TTL before the lease ends the agent
// starts stopping VMs: they are down when the lease ends, and the servers'
// margin covers only clock drift and scheduling.
func selfFenceLead(ttl time.Duration) time.Duration { return ttl / 10 }

// expired reports whether an armed lease has run out (or is about to: see
// selfFenceLead).
func (a *Agent) expired(now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.armed && !a.until.IsZero() && !now.Before(a.until.Add(-selfFenceLead(a.ttl)))
}

// fenceLoop stops the host's VMs as soon as the lease runs out, and keeps
// them stopped while it stays out.
func (a *Agent) fenceLoop(ctx context.Context) {
	for ctx.Err() == nil {
		if a.expired(time.Now()) {
			a.selfFence(ctx)
			ctxsleep.Sleep(ctx, time.Second)
			continue
		}
		ctxsleep.Sleep(ctx, 50*time.Millisecond)
	}
}

// selfFence powers off every VM running on this host.
func (a *Agent) selfFence(ctx context.Context) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	n, err := a.stopVMs(fctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fenceErr = err
	if err != nil {
		a.log.Error("self-fencing: could not stop every VM; the watchdog is no longer fed", "err", err)
		return
	}
	if !a.fenced {
		a.fenced, a.fencedAt = true, time.Now()
		a.log.Error("lease ran out: self-fenced, this host's VMs are stopped", "stopped", n)
	} else if n > 0 {
		a.log.Error("lease still out: stopped VMs that were started again", "stopped", n)
	}
	a.stopped += n
}

// stopVMs powers off every running VM of this host, all at once.
func (a *Agent) stopVMs(ctx context.Context) (int, error) {
	inv, err := a.hv.Inventory(ctx)
	if err != nil {
		return 0, fmt.Errorf("list VMs: %w", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	n := 0
	for _, vm := range inv.VMs {
		if vm.Host != a.cfg.Host || vm.Power == drivers.PoweredOff {
			continue
		}
		n++
		wg.Go(func() {
			if err := a.hv.PowerOff(ctx, vm.ID); err != nil && !errors.Is(err, drivers.ErrNotFound) {
				mu.Lock()
				errs = append(errs, fmt.Errorf("power off %s: %w", vm.Name, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return n, errors.Join(errs...)
}

// hypervisorLoop tells gossip whether the local hypervisor answers.
func (a *Agent) hypervisorLoop(ctx context.Context) {
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := a.hv.ProbeHost(pctx, a.cfg.Host)
		cancel()
		state := "ok"
		if err != nil || conn != drivers.Connected {
			state = "down"
		}
		a.mu.Lock()
		changed := state != a.hvState
		a.hvState = state
		a.mu.Unlock()
		if changed && ctx.Err() == nil {
			a.log.Info("local hypervisor", "state", state)
			if err := a.gossip.SetMeta(a.meta(state)); err != nil {
				a.log.Warn("update gossip metadata", "err", err)
			}
		}
		ctxsleep.Sleep(ctx, time.Second)
	}
}

// trimLoop keeps the agent small on its host: once it runs, and then every
// ten minutes, the binary's pages it does not use leave its resident set
// (the herd binary carries the server too; the agent needs little of it).
func (a *Agent) trimLoop(ctx context.Context) {
	ctxsleep.Sleep(ctx, 5*time.Second)
	for ctx.Err() == nil {
		n := trimExecutable()
		a.log.Debug("trimmed the resident set", "advised_bytes", n)
		ctxsleep.Sleep(ctx, 10*time.Minute)
	}
}

// watchdogLoop feeds systemd's watchdog while the agent does its job: not
// when the lease ran out and the VMs could not be stopped.
func (a *Agent) watchdogLoop(ctx context.Context) {
	if a.opts.Watchdog <= 0 {
		return
	}
	for ctx.Err() == nil {
		if a.Healthy() {
			a.notify("WATCHDOG=1")
		}
		ctxsleep.Sleep(ctx, a.opts.Watchdog/2)
	}
}

// Healthy is false while the lease is out and the VMs could not be stopped.
func (a *Agent) Healthy() bool {
	out := a.expired(time.Now())
	a.mu.Lock()
	defer a.mu.Unlock()
	return !out || (a.fenced && a.fenceErr == nil)
}

// Status is what the agent knows of itself.
type Status struct {
	Armed      bool
	TTL        time.Duration
	Remaining  time.Duration // of the lease; 0 when out
	Fenced     bool
	FencedAt   time.Time
	StoppedVMs int
}

// Status reports the lease and self-fencing.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Status{Armed: a.armed, TTL: a.ttl, Fenced: a.fenced, FencedAt: a.fencedAt, StoppedVMs: a.stopped}
	if a.armed {
		st.Remaining = max(time.Until(a.until), 0)
	}
	return st
}

// loadState reads the state file a previous run left.
func (a *Agent) loadState() error {
	data, err := os.ReadFile(a.cfg.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("agent state: %w", err)
	}
	var st agentState
	if err := json.Unmarshal(data, &st); err != nil {
		// A torn file: assume the worst, an armed lease that ran out.
		a.log.Error("agent state file unreadable: treating the lease as expired", "file", a.cfg.StateFile, "err", err)
		a.armed, a.until = true, time.Now()
		return nil
	}
	a.armed, a.ttl = st.Armed, st.TTL
	if st.Armed {
		a.until = time.Now().Add(time.Until(st.Deadline))
	}
	return nil
}

func (a *Agent) saveState() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.saveStateLocked()
}

// saveStateLocked writes the state file atomically.
func (a *Agent) saveStateLocked() {
	st := agentState{Armed: a.armed, TTL: a.ttl}
	if a.armed {
		st.Deadline = time.Now().Add(time.Until(a.until)).UTC()
	}
	data, _ := json.Marshal(st)
	dir := filepath.Dir(a.cfg.StateFile)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		a.log.Warn("agent state", "err", err)
		return
	}
	tmp := a.cfg.StateFile + ".tmp"
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		a.log.Warn("agent state", "err", err)
		return
	}
	if err := os.Rename(tmp, a.cfg.StateFile); err != nil {
		a.log.Warn("agent state", "err", err)
	}
}
