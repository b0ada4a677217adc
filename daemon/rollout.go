package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/controller/balance"
	"github.com/herd-project/herd/daemon/controller/rollout"
	"github.com/herd-project/herd/metrics"
)

// newRolloutController builds the leader's rollout controller and its metrics.
func newRolloutController(s *Server) *rollout.Controller {
	m := metrics.NewRollout(s.reg, s.rolloutSample)
	return rollout.New(rollout.Deps{
		State:        func() *cluster.State { return s.node.FSM().State() },
		Policy:       s.Policy,
		Apply:        rolloutApplier{s},
		Maintenance:  s.maint.Rollout(),
		Hooks:        rollout.ExecRunner{},
		Gate:         windowGate{s},
		Clock:        &s.clock,
		Observer:     rolloutObserver{m},
		APIAddr:      s.apiAddr,
		AgentStarted: s.leases.AgentStarted,
		Log:          s.log.With("controller", "rollout"),
	})
}

type rolloutApplier struct{ s *Server }

type rolloutObserver struct{ m *metrics.Rollout }

func (o rolloutObserver) PhaseEnded(p cluster.RolloutPhase, seconds float64) {
	o.m.StepDuration.WithLabelValues(string(p)).Observe(seconds)
}

func (o rolloutObserver) HookEnded(result string) { o.m.HookRuns.WithLabelValues(result).Inc() }

// windowGate holds host steps to the rollout's maintenance window.
type windowGate struct{ s *Server }

func (g windowGate) MayStart(r *cluster.Rollout, host string, now time.Time) (bool, string) {
	if r.Window == "" {
		return true, ""
	}
	w := balance.WindowState(g.s.Policy(), r.Window, now)
	if w == nil {
		return false, fmt.Sprintf("window %s is not in the policy (windows)", r.Window)
	}
	if w.Open {
		return true, ""
	}
	return false, fmt.Sprintf("window %s is closed: the next host step starts when it opens at %s", r.Window, w.Opens.Format(time.RFC3339))
}

// rolloutSample counts the rollouts for the metrics.
func (s *Server) rolloutSample() metrics.RolloutSample {
	out := metrics.RolloutSample{Hosts: map[string]int{}, Rollouts: map[string]int{}}
	now := s.clock.Now()
	s.node.FSM().Read(func(st *cluster.State) {
		for _, r := range st.Rollouts {
			out.Rollouts[string(r.State)]++
			if r.State.Terminal() {
				continue
			}
			for _, h := range r.Hosts {
				out.Hosts[string(h.Phase)]++
			}
			if r.State == cluster.RolloutRunning {
				out.SinceProgress = max(out.SinceProgress, now.Sub(r.Updated).Seconds())
			}
		}
	})
	return out
}

func (a rolloutApplier) Apply(ctx context.Context, cmd cluster.Command) error {
	_, err := a.s.node.Apply(ctx, cmd)
	return err
}
