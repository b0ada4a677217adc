// Package gossip is the gossip membership of servers and host agents
// (hashicorp/memberlist): members and their metadata, the keyring, the
// network profiles, suspicion counts, and keeping a server joined.
package gossip

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	metrics "github.com/hashicorp/go-metrics"
	"github.com/hashicorp/memberlist"

	"github.com/herd-project/herd/internal/logbridge"
)

// Roles of gossip members.
const (
	RoleServer = "server"
	RoleAgent  = "agent"
)

// MemberMeta is what every member tells the others about itself.
type MemberMeta struct {
	Role string `json:"role"`
	// Host is the hypervisor host an agent runs on.
	Host string `json:"host,omitempty"`
	// API is a server's API address.
	API string `json:"api,omitempty"`
	// Hypervisor is an agent's view of its local hypervisor (ok, down).
	Hypervisor string `json:"hypervisor,omitempty"`
}

// Member is one member as this node sees it.
type Member struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	// State is "alive": memberlist lists only the members it has not
	// declared dead or left, and does not show which of them are suspect.
	State string     `json:"state"`
	Meta  MemberMeta `json:"meta"`
}

// Config configures one gossip member.
type Config struct {
	Name string
	// Bind is host:port to listen on (TCP and UDP); Advertise what others
	// reach (Bind when empty; a port of 0 takes what the listener got).
	Bind, Advertise string
	// Keys is the keyring, primary first: 16, 24 or 32 bytes each. With a
	// keyring every message is encrypted and unencrypted ones are refused.
	Keys [][]byte
	Meta MemberMeta
	// Profile names memberlist's timings: ProfileLAN (the default) or
	// ProfileLocal; see Profiles.
	Profile string
	// Fast shortens probe and gossip intervals (loopback tests).
	Fast bool
	// Drop, when set, drops this member's outgoing packets and
	// connections while it returns true: a lossy uplink, for tests of
	// short network losses.
	Drop func() bool
	// OnSuspect, when set, hears each suspicion this member learns of: a
	// member that stopped answering direct, indirect and TCP probes (this
	// member's or another's), before the suspicion timeout declares it
	// dead. It must not block.
	OnSuspect func()
	// OnProbe, when set, is told the round-trip time of every successful
	// probe of another member.
	OnProbe func(rtt time.Duration)
	Logger  *slog.Logger
}

// Gossip is this node's membership in the gossip pool of servers and agents.
type Gossip struct {
	ml     *memberlist.Memberlist
	mu     sync.Mutex
	meta   []byte
	down   bool // shut down
	events chan struct{}
	// stopHooks ends OnSuspect's delivery.
	stopHooks func()
}

// ReadKeyring reads a keyring file: one base64 key per line, the primary
// first; blank lines and lines starting with # are skipped.
func ReadKeyring(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read gossip keyring: %w", err)
	}
	var keys [][]byte
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: not base64", path, i+1)
		}
		if l := len(k); l != 16 && l != 24 && l != 32 {
			return nil, fmt.Errorf("%s:%d: a key is 16, 24 or 32 bytes, not %d", path, i+1, l)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no keys", path)
	}
	return keys, nil
}

// Gossip timing profiles.
const (
	// ProfileLAN is memberlist's LAN timing: a probe every second with a
	// 500 ms answer time, 3 indirect probes, a suspicion of at least 4 s
	// (more in large pools) before a member is declared dead.
	ProfileLAN = "lan"
	// ProfileLocal is memberlist's timing for a fast, quiet network (one
	// switch, a dedicated management VLAN): 200 ms answer time, 1 indirect
	// probe, a suspicion of at least 3 s. A crashed host's agent is
	// declared dead sooner, at the price of less tolerance for lost
	// packets; a host is still dead only when its manager is lost too.
	ProfileLocal = "local"
)

// Profiles are the profiles Profile may name.
var Profiles = []string{ProfileLAN, ProfileLocal}

// memberlistConfig is memberlist's configuration for a profile ("" is
// ProfileLAN).
func memberlistConfig(profile string) (*memberlist.Config, error) {
	switch profile {
	case "", ProfileLAN:
		return memberlist.DefaultLANConfig(), nil
	case ProfileLocal:
		return memberlist.DefaultLocalConfig(), nil
	}
	return nil, fmt.Errorf("gossip profile %q: want one of %s", profile, strings.Join(Profiles, ", "))
}

// Start creates the member and starts listening; Join connects it.
func Start(cfg Config) (*Gossip, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	host, port, err := splitPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("gossip bind %q: %w", cfg.Bind, err)
	}
	mc, err := memberlistConfig(cfg.Profile)
	if err != nil {
		return nil, err
	}
	if cfg.Fast {
		mc = memberlist.DefaultLocalConfig()
		mc.ProbeInterval, mc.ProbeTimeout, mc.GossipInterval = 200*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
		mc.SuspicionMult = 2
		// Stop gossiping to a dead member soon: tests of partitions that
		// outlast it need not wait memberlist's 15 s.
		mc.GossipToTheDeadTime = 3 * time.Second
	}
	mc.Name, mc.BindAddr, mc.BindPort = cfg.Name, host, port
	mc.AdvertisePort = port
	if cfg.Advertise != "" {
		ah, ap, err := splitPort(cfg.Advertise)
		if err != nil {
			return nil, fmt.Errorf("gossip advertise %q: %w", cfg.Advertise, err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	if len(cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keys, cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("gossip keyring: %w", err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	mc.Logger = logbridge.StdLogger(cfg.Logger, "memberlist")
	meta, err := json.Marshal(cfg.Meta)
	if err != nil {
		return nil, err
	}
	if cfg.Drop != nil {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: mc.Logger})
		if err != nil {
			return nil, fmt.Errorf("start gossip on %s: %w", cfg.Bind, err)
		}
		if port == 0 {
			mc.BindPort = nt.GetAutoBindPort()
			if cfg.Advertise == "" {
				mc.AdvertisePort = mc.BindPort
			}
		}
		mc.Transport = newLossyTransport(nt, cfg.Drop)
	}
	g := &Gossip{meta: meta, events: make(chan struct{}, 1)}
	mc.Delegate = &gossipDelegate{g: g}
	if cfg.OnProbe != nil {
		mc.Ping = probeDelegate(cfg.OnProbe)
	}
	mc.Events = &gossipEvents{g: g}
	if cfg.OnSuspect != nil {
		label, stop, err := sink.register(cfg.OnSuspect)
		if err != nil {
			return nil, fmt.Errorf("gossip suspicion metrics: %w", err)
		}
		mc.MetricLabels = []metrics.Label{label}
		g.stopHooks = stop
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		g.unhook()
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.Bind, err)
	}
	g.ml = ml
	return g, nil
}

func splitPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, err
	}
	return h, port, nil
}

// Addr is the address others reach this member at.
func (g *Gossip) Addr() string {
	n := g.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Join contacts existing members; it succeeds when one answers.
func (g *Gossip) Join(addrs []string) error {
	if len(addrs) == 0 {
		return nil
	}
	n, err := g.ml.Join(addrs)
	if n == 0 {
		if err == nil {
			err = errors.New("no member answered")
		}
		return fmt.Errorf("join gossip via %v: %w", addrs, err)
	}
	return nil
}

// SetMeta changes what this member tells the others.
func (g *Gossip) SetMeta(m MemberMeta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.meta = b
	g.mu.Unlock()
	return g.ml.UpdateNode(5 * time.Second)
}

// Changes is signalled (without blocking memberlist) when members change.
func (g *Gossip) Changes() <-chan struct{} { return g.events }

// Members lists every member this node knows, by name.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	down := g.down
	g.mu.Unlock()
	if down {
		return nil // a member that left has no view of the pool
	}
	var out []Member
	for _, n := range g.ml.Members() {
		out = append(out, toMember(n))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func toMember(n *memberlist.Node) Member {
	m := Member{Name: n.Name, Addr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))}
	m.State = "alive" // n.State is always StateAlive: see suspicionSink
	_ = json.Unmarshal(n.Meta, &m.Meta)
	return m
}

// Leave tells the others this member goes, then stops it. After Shutdown
// it does nothing.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.mu.Lock()
	down := g.down
	g.down = true
	g.mu.Unlock()
	if down {
		return nil
	}
	err := g.ml.Leave(timeout)
	if serr := g.ml.Shutdown(); err == nil {
		err = serr
	}
	g.unhook()
	return err
}

// Shutdown stops the member without telling the others (they see it fail).
func (g *Gossip) Shutdown() error {
	g.mu.Lock()
	g.down = true
	g.mu.Unlock()
	err := g.ml.Shutdown()
	g.unhook()
	return err
}

func (g *Gossip) unhook() {
	if g.stopHooks != nil {
		g.stopHooks()
	}
}

func (g *Gossip) signal() {
	select {
	case g.events <- struct{}{}:
	default:
	}
}

// gossipDelegate serves this member's metadata; callbacks never block.
type gossipDelegate struct{ g *Gossip }

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	if len(d.g.meta) > limit {
		return nil
	}
	return append([]byte(nil), d.g.meta...)
}
func (d *gossipDelegate) NotifyMsg([]byte)                           {}
func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(join bool) []byte                { return nil }
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

type gossipEvents struct{ g *Gossip }

func (e *gossipEvents) NotifyJoin(*memberlist.Node)   { e.g.signal() }
func (e *gossipEvents) NotifyLeave(*memberlist.Node)  { e.g.signal() }
func (e *gossipEvents) NotifyUpdate(*memberlist.Node) { e.g.signal() }

// lossyTransport drops outgoing traffic while drop says so: packets and
// dials, and connections others open to it (the answer would not get out),
// so that memberlist's TCP fallback probe fails too.
type lossyTransport struct {
	*memberlist.NetTransport
	drop    func() bool
	streams chan net.Conn
	done    chan struct{}
}

func newLossyTransport(nt *memberlist.NetTransport, drop func() bool) *lossyTransport {
	t := &lossyTransport{NetTransport: nt, drop: drop, streams: make(chan net.Conn), done: make(chan struct{})}
	go func() {
		for {
			select {
			case c := <-nt.StreamCh():
				if drop() {
					c.Close()
					continue
				}
				select {
				case t.streams <- c:
				case <-t.done:
					c.Close()
					return
				}
			case <-t.done:
				return
			}
		}
	}()
	return t
}

func (t *lossyTransport) Shutdown() error {
	close(t.done)
	return t.NetTransport.Shutdown()
}

func (t *lossyTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *lossyTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.drop() {
		return time.Now(), nil // lost on the wire
	}
	return t.NetTransport.WriteTo(b, addr)
}

func (t *lossyTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

func (t *lossyTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.drop() {
		time.Sleep(timeout)
		return nil, fmt.Errorf("dial %s: i/o timeout (dropped)", addr)
	}
	return t.NetTransport.DialTimeout(addr, timeout)
}

func (t *lossyTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

// probeDelegate reports probe round trips.
type probeDelegate func(rtt time.Duration)

func (probeDelegate) AckPayload() []byte { return nil }

func (p probeDelegate) NotifyPingComplete(_ *memberlist.Node, rtt time.Duration, _ []byte) { p(rtt) }
