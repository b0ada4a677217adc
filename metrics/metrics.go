// Package metrics defines every Prometheus metric Herd exposes, in one
// place. It imports nothing of Herd's: the daemon feeds it plain samples.
// Names are herd_<subsystem>_<name>_<unit>; counters end in _total; labels
// are bounded (host, driver, kind, result, state) — never an error string or
// a VM id.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds the collectors that code updates as things happen.
type Metrics struct {
	APIRequests        *prometheus.CounterVec
	APIRequestDuration *prometheus.HistogramVec
	InventorySyncs     *prometheus.CounterVec
	InventorySyncTime  *prometheus.HistogramVec
	InventoryChanges   *prometheus.CounterVec
	ForwardedRequests  *prometheus.CounterVec
	Migrations         *prometheus.CounterVec
	MigrationDuration  *prometheus.HistogramVec
	PolicyReloads      *prometheus.CounterVec
	BalanceImbalance   prometheus.Gauge
	BalanceRecommended prometheus.Gauge
	RuleViolations     prometheus.Gauge
	BalanceMoves       prometheus.Counter
	MetricSourceErrors *prometheus.CounterVec
	VMDuplicates       *prometheus.GaugeVec
	// Recovery of crashed hosts.
	FencingAttempts  *prometheus.CounterVec
	Recoveries       *prometheus.CounterVec
	RecoveryDuration prometheus.Histogram
	Recreations      *prometheus.CounterVec
	RecoveryStorm    prometheus.Gauge
	LeaseRenewals    *prometheus.CounterVec
	// Gossip health.
	GossipProbeRTT   prometheus.Histogram
	GossipSuspicions prometheus.Counter

	src           Sources
	handlerErrors *prometheus.CounterVec
}

// Sources feed the collectors that read state at scrape time. State is read
// once per scrape of Handler.
type Sources struct {
	State func() StateSample
	Raft  func() RaftSample
	// InFlight reports the migrations running now.
	InFlight func() int
	Policy   func() PolicySample
	// Gossip counts gossip members by state (alive, suspect, dead, left).
	Gossip func() map[string]int
}

// PolicySample is the policy in force and this server's own file.
type PolicySample struct {
	Version        int
	Drift          bool
	LastReloadOK   bool
	LastReloadTime float64 // Unix seconds; 0 before any reload
}

// New creates and registers Herd's metrics on reg, with the process and Go
// runtime collectors, and the collectors that read src at scrape time.
func New(reg prometheus.Registerer, src Sources) *Metrics {
	m := &Metrics{
		src: src,
		handlerErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promhttp_metric_handler_errors_total",
			Help: "Total number of internal errors encountered by the promhttp metric handler.",
		}, []string{"cause"}),
		APIRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_api_requests_total",
			Help: "API requests answered, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		APIRequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herd_api_request_duration_seconds",
			Help:    "Time to answer an API request, by route pattern.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		InventorySyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_inventory_syncs_total",
			Help: "Inventory sync rounds, by driver and result (ok, error).",
		}, []string{"driver", "result"}),
		InventorySyncTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herd_inventory_sync_duration_seconds",
			Help:    "Time of one inventory sync round (driver read, diff and raft write), by driver.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"driver"}),
		InventoryChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_inventory_changes_total",
			Help: "Changes inventory sync wrote to the state, by driver and kind (host_upsert, host_remove, vm_upsert, vm_remove).",
		}, []string{"driver", "kind"}),
		ForwardedRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_api_forwarded_requests_total",
			Help: "Write requests a follower forwarded to the leader, by result (ok, no_leader, error).",
		}, []string{"result"}),
		Migrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_migrations_total",
			Help: "Migrations Herd ran, by kind (live, offline) and result (ok, error).",
		}, []string{"kind", "result"}),
		PolicyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_policy_reloads_total",
			Help: "Reloads of this server's policy file, by result (ok, error).",
		}, []string{"result"}),
		BalanceImbalance: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_balance_imbalance_ratio",
			Help: "Imbalance at the last balance plan: the most loaded host's utilisation minus the mean (0 to 1).",
		}),
		BalanceRecommended: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_balance_recommended_moves",
			Help: "Moves the last balance plan recommends.",
		}),
		RuleViolations: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_rule_violations",
			Help: "VMs whose current host breaks a must rule (found at every policy change and inventory).",
		}),
		BalanceMoves: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_balance_moves_total",
			Help: "Moves started by balance operations.",
		}),
		MetricSourceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_metric_source_errors_total",
			Help: "Failed or empty reads of a metric source, by source; Herd fell back to memory.",
		}, []string{"source"}),
		VMDuplicates: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herd_vm_duplicates",
			Help: "VMs the last inventory sync found on more than one connected host, by driver (a paused copy after an aborted migration, a stale copy that runs on a host that came back; a shut-off stale copy waiting to be destroyed is not counted).",
		}, []string{"driver"}),
		MigrationDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herd_migration_duration_seconds",
			Help:    "Time of one successful migration, by kind.",
			Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800},
		}, []string{"kind"}),
		FencingAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_fencing_attempts_total",
			Help: "Fencing attempts on dead hosts, by host, method (power, lease, dev, operator) and result (success, failure, unavailable).",
		}, []string{"host", "method", "result"}),
		Recoveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_recoveries_total",
			Help: "Recoveries of fenced hosts that ended, by result (succeeded, failed, cancelled).",
		}, []string{"result"}),
		RecoveryDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herd_recovery_duration_seconds",
			Help:    "Time from a host's failure being detected to the last of its VMs running elsewhere.",
			Buckets: []float64{1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600, 1800},
		}),
		Recreations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_recovery_vm_recreations_total",
			Help: "VMs recreated (or registered) elsewhere after their host was fenced, by result (ok, error).",
		}, []string{"result"}),
		RecoveryStorm: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_recovery_storm",
			Help: "1 while more than recovery.storm_threshold of the hosts look dead: nothing is fenced automatically (leader only).",
		}),
		GossipProbeRTT: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herd_gossip_probe_rtt_seconds",
			Help:    "Round-trip time of this server's successful gossip probes of other members.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		GossipSuspicions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_gossip_probe_failures_total",
			Help: "Suspicions this server learned of: a gossip member stopped answering direct, indirect and TCP probes (this server's or another member's) and turned suspect.",
		}),
		LeaseRenewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_agent_lease_renewals_total",
			Help: "Agent lease renewals answered by this server, by result (ok, refused).",
		}, []string{"result"}),
	}
	inFlightGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "herd_migrations_in_flight",
		Help: "Migrations, shutdowns and power-ons running now on this server (the leader).",
	}, func() float64 {
		if src.InFlight == nil {
			return 0
		}
		return float64(src.InFlight())
	})
	reg.MustRegister(m.APIRequests, m.Migrations, m.MigrationDuration, inFlightGauge, m.PolicyReloads,
		m.BalanceImbalance, m.BalanceRecommended, m.RuleViolations, m.BalanceMoves, m.MetricSourceErrors, m.VMDuplicates, m.APIRequestDuration, m.InventorySyncs, m.InventorySyncTime,
		m.InventoryChanges, m.ForwardedRequests,
		m.FencingAttempts, m.Recoveries, m.RecoveryDuration, m.Recreations, m.RecoveryStorm, m.LeaseRenewals,
		m.GossipProbeRTT, m.GossipSuspicions,
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		m.handlerErrors,
		&stateCollector{raft: src.Raft, policy: src.Policy, gossip: src.Gossip})
	return m
}
