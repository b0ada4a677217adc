package daemon

import (
	"context"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/alertmanager"
	"github.com/herd-project/herd/metrics"
)

// nodeStore gives the Alertmanager controllers the raft node through the
// narrow interface they use.
type nodeStore struct{ n *cluster.Node }

func (s nodeStore) Read(fn func(st *cluster.State)) { s.n.FSM().Read(fn) }

func (s nodeStore) Apply(ctx context.Context, cmd cluster.Command) (uint64, error) {
	return s.n.Apply(ctx, cmd)
}

// newSilencer builds the leader controller that silences the alerts of
// hosts in maintenance.
func (s *Server) newSilencer() Controller {
	s.amMetrics = metrics.NewAlertmanager(s.reg)
	wake := make(chan uint64, 1)
	s.node.FSM().Watch(wake)
	return alertmanager.NewSilencer(nodeStore{s.node}, s.Policy, s.log, s.amMetrics.Errors, wake)
}
