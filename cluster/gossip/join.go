package gossip

import (
	"context"
	"log/slog"
	"time"

	"github.com/herd-project/herd/internal/ctxsleep"
)

// joinEvery is how often KeepJoined checks the pool and retries a join.
const joinEvery = 2 * time.Second

// KeepJoined joins gossip through join, and joins again whenever this
// member sees no other server alive, until ctx ends. After a partition that
// outlasted memberlist's GossipToTheDeadTime, each side has declared the
// other dead and neither contacts the other again: without a new join the
// pool never heals, and a host whose agent was cut off would never come
// back.
func (g *Gossip) KeepJoined(ctx context.Context, join []string, log *slog.Logger) {
	self := g.ml.LocalNode().Name
	// sawServer: another server was alive since the last join, so a join
	// now is news worth a line (a lone server joining itself is not).
	joined, failing, sawServer := false, false, false
	for ctx.Err() == nil {
		if OtherServerAlive(g.Members(), self) {
			sawServer = true
		} else {
			err := g.Join(join)
			switch {
			case err != nil && !failing:
				log.Warn("gossip join failed; retrying", "via", join, "every", joinEvery, "err", err)
			case err == nil && !joined:
				log.Info("joined gossip", "via", join)
			case err == nil && sawServer:
				log.Info("joined gossip again: no other server was alive in it", "via", join)
			}
			failing = err != nil
			joined = joined || err == nil
			sawServer = sawServer && err != nil
		}
		ctxsleep.Sleep(ctx, joinEvery)
	}
}

// OtherServerAlive reports whether members has a server other than self.
func OtherServerAlive(members []Member, self string) bool {
	for _, m := range members {
		if m.Name != self && m.Meta.Role == RoleServer && m.State == "alive" {
			return true
		}
	}
	return false
}
