package daemon

import (
	"context"
	"fmt"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/raftnode"
	"github.com/herd-project/herd/daemon/alertmanager"
	"github.com/herd-project/herd/daemon/maintenance"
	"github.com/herd-project/herd/metrics"
)

// nodeStore gives the Alertmanager controllers the raft node through the
// narrow interface they use.
type nodeStore struct{ n *raftnode.Node }

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
	d := alertmanager.Deps{Store: nodeStore{s.node}, Policy: s.Policy, Log: s.log, Metrics: s.amMetrics, Wake: wake}
	s.webhook = alertmanager.NewWebhook(d, alertActions{s})
	return alertmanager.NewSilencer(d)
}

// alertActions are the host actions Alertmanager's webhook may take, on
// the paths people and the health controller use.
type alertActions struct{ s *Server }

func (a alertActions) Evacuate(ctx context.Context, host, why string) (string, error) {
	return a.s.maint.Evacuate(ctx, host, why, maintenance.Auto{Who: alertmanager.Actor, BlockedType: "alert.blocked",
		Seems: "is asked to evacuate by", FromNotAccepting: true})
}

func (a alertActions) NotAccepting(ctx context.Context, host, why string) (string, error) {
	h := a.s.node.FSM().State().Hosts[host]
	if h == nil || h.Admin != cluster.Available {
		if h == nil {
			return "unchanged: host not found", nil
		}
		return fmt.Sprintf("unchanged: host is %s", h.Admin), nil
	}
	msg := fmt.Sprintf("host %s set NOT_ACCEPTING: %s", host, why)
	_, err := a.s.node.Apply(ctx, &cluster.SetHostStatus{Host: host, Status: cluster.NotAccepting, Reason: why,
		Event: cluster.NewEvent("host.status", alertmanager.Actor, host, "", msg)})
	if err != nil {
		return "", err
	}
	return "not accepting: host takes no new VMs", nil
}

func (a alertActions) Note(ctx context.Context, host, why string) (string, error) {
	_, err := a.s.node.Apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{cluster.NewEvent(alertmanager.EventNote, alertmanager.Actor, host, "", why)}})
	if err != nil {
		return "", err
	}
	return "noted: event recorded", nil
}
