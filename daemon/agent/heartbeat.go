package agent

import (
	"context"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/internal/ctxsleep"
)

// heartbeatLoop tells the leader every api.HeartbeatEvery that this agent runs:
// the host's direct liveness path (see api.HeartbeatEvery). It keeps one client
// per server, so that beats reuse their connection, and sends to the
// leader the last answer named first: a follower forwards, and its answer
// names the new leader after a change.
func (a *Agent) heartbeatLoop(ctx context.Context) {
	clients := map[string]*api.Client{}
	for ctx.Err() == nil {
		next := time.Now().Add(api.HeartbeatEvery)
		a.heartbeat(ctx, clients)
		ctxsleep.Sleep(ctx, time.Until(next))
	}
}

// heartbeat sends one beat, trying the known servers in turn until one
// records it or api.HeartbeatLost is spent. A server that fails is no longer
// tried first.
func (a *Agent) heartbeat(ctx context.Context, clients map[string]*api.Client) {
	end := time.Now().Add(api.HeartbeatLost)
	for i, addr := range a.serverAddrs() {
		if ctx.Err() != nil || !time.Now().Before(end) {
			return
		}
		c := clients[addr]
		if c == nil {
			var err error
			if c, err = a.client(addr); err != nil {
				continue
			}
			clients[addr] = c
		}
		hctx, cancel := context.WithTimeout(ctx, api.HeartbeatTimeout)
		a.mu.Lock()
		started := a.started
		a.mu.Unlock()
		got, err := c.Heartbeat(hctx, a.cfg.Host, api.Heartbeat{Agent: a.cfg.NodeName, Started: started})
		cancel()
		if err != nil {
			if i == 0 {
				a.mu.Lock()
				a.preferred = ""
				a.mu.Unlock()
			}
			continue
		}
		if got.Leader != "" {
			a.mu.Lock()
			a.preferred = got.Leader
			a.mu.Unlock()
		}
		return
	}
}
