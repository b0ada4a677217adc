package membership

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/herd-project/herd/cluster/gossip"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/metrics"
)

// Gossip is a server's place in the gossip pool. Without gossip.listen
// there is no pool: it lists no members.
type Gossip struct {
	pool *gossip.Gossip
}

// Start joins the server to the gossip pool when g.Listen is set: it
// announces its role and API address, and retries the join list until a
// member answers — and again whenever it sees no other server alive
// (gossip.Gossip.KeepJoined) — until ctx ends; wg counts that loop.
func (gs *Gossip) Start(ctx context.Context, wg *sync.WaitGroup, g config.Gossip, name, apiAddr string, m *metrics.Metrics, log *slog.Logger) error {
	if g.Listen == "" {
		return nil
	}
	var keys [][]byte
	if g.KeyringFile != "" {
		k, err := gossip.ReadKeyring(g.KeyringFile)
		if err != nil {
			return err
		}
		keys = k
	}
	pool, err := gossip.Start(gossip.Config{Name: name, Bind: g.Listen, Advertise: g.Advertise, Keys: keys, Profile: g.Profile,
		Meta: gossip.MemberMeta{Role: gossip.RoleServer, API: apiAddr}, Logger: log,
		OnProbe:   func(rtt time.Duration) { m.GossipProbeRTT.Observe(rtt.Seconds()) },
		OnSuspect: m.GossipSuspicions.Inc})
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	gs.pool = pool
	if len(g.Join) == 0 {
		return nil
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		pool.KeepJoined(ctx, g.Join, log)
	}()
	return nil
}

// Members lists the pool as this server sees it (nil without gossip).
func (gs *Gossip) Members() []gossip.Member {
	if gs.pool == nil {
		return nil
	}
	return gs.pool.Members()
}

// Addr is the pool's address this server gossips on ("" without gossip).
func (gs *Gossip) Addr() string {
	if gs.pool == nil {
		return ""
	}
	return gs.pool.Addr()
}

// States counts members by state for the metrics.
func (gs *Gossip) States() map[string]int {
	out := map[string]int{}
	for _, m := range gs.Members() {
		out[m.State]++
	}
	return out
}

// Leave tells the pool this server leaves, within timeout.
func (gs *Gossip) Leave(timeout time.Duration) error {
	if gs.pool == nil {
		return nil
	}
	return gs.pool.Leave(timeout)
}
