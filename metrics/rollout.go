package metrics

import "github.com/prometheus/client_golang/prometheus"

// RolloutSample is what the state holds of rollouts at scrape time.
type RolloutSample struct {
	// Hosts counts the hosts of rollouts that have not ended, by phase.
	Hosts map[string]int
	// Rollouts counts the rollouts held in the state by state.
	Rollouts map[string]int
	// SinceProgress is, over the running (not paused) rollouts, the
	// longest time since one last moved a host step or said why it
	// waits; 0 when none runs.
	SinceProgress float64
}

// RolloutPhases and RolloutStates bound the labels of herd_rollout_hosts
// and herd_rollouts.
var (
	RolloutPhases = []string{"pending", "entering", "working", "returning", "exiting", "done", "failed", "skipped"}
	RolloutStates = []string{"running", "paused", "succeeded", "failed", "cancelled"}
)

// RolloutSteps bound the label of herd_rollout_step_duration_seconds: the
// phases a host of a rollout passes through and leaves.
var RolloutSteps = []string{"entering", "working", "returning", "exiting"}

// Rollout holds the rollout controller's collectors.
type Rollout struct {
	// StepDuration observes how long each phase of a host step took.
	StepDuration *prometheus.HistogramVec
	// HookRuns counts hook runs that ended, by result.
	HookRuns *prometheus.CounterVec
}

var (
	descRolloutHosts = prometheus.NewDesc("herd_rollout_hosts",
		"Hosts of the rollouts that have not ended, by state (pending, entering, working, returning, exiting, done, failed, skipped).", []string{"state"}, nil)
	descRollouts    = prometheus.NewDesc("herd_rollouts", "Rollouts held in the state, by state.", []string{"state"}, nil)
	descRolloutIdle = prometheus.NewDesc("herd_rollout_seconds_since_progress",
		"Over the running rollouts, the longest time since one last moved a host step; 0 when none runs.", nil, nil)
)

// NewRollout registers the rollout metrics on reg; src is read at scrape time.
func NewRollout(reg prometheus.Registerer, src func() RolloutSample) *Rollout {
	m := &Rollout{
		StepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herd_rollout_step_duration_seconds",
			Help:    "Time a host of a rollout spent in one phase (entering, working, returning, exiting), by phase.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200},
		}, []string{"step"}),
		HookRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_rollout_hook_runs_total",
			Help: "Rollout hook runs that ended on this server (the leader), by result (ok, error).",
		}, []string{"result"}),
	}
	// Every bounded label value is exposed from the start, at zero.
	for _, step := range RolloutSteps {
		m.StepDuration.WithLabelValues(step)
	}
	for _, r := range []string{"ok", "error"} {
		m.HookRuns.WithLabelValues(r)
	}
	reg.MustRegister(m.StepDuration, m.HookRuns, &rolloutCollector{src: src})
	return m
}

type rolloutCollector struct{ src func() RolloutSample }

func (c *rolloutCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRolloutHosts
	ch <- descRollouts
	ch <- descRolloutIdle
}

func (c *rolloutCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src()
	for _, p := range RolloutPhases {
		ch <- gauge(descRolloutHosts, float64(s.Hosts[p]), p)
	}
	for _, st := range RolloutStates {
		ch <- gauge(descRollouts, float64(s.Rollouts[st]), st)
	}
	ch <- gauge(descRolloutIdle, s.SinceProgress)
}
