// Package policy is Herd's policy document (policy.yaml): its types, the
// defaults, the loader and the validation that names every bad field, the
// maintenance windows, and the pure decisions read straight from it: the
// health fusion, the storm count and a step's wait for its source host.
// The planners that use it live below: placement, balancing, failover and
// plan.
package policy

import "time"

// APIVersion and Kind head every policy file.
const (
	APIVersion = "herd/v1"
	Kind       = "Policy"
)

// Document is the policy in force cluster-wide (/etc/herd/policy.yaml).
// Keys are snake_case like herd.yaml; every section has defaults, so an
// empty document (apiVersion and kind only) is a valid policy.
type Document struct {
	APIVersion string `yaml:"apiVersion" json:"apiVersion"`
	Kind       string `yaml:"kind" json:"kind"`

	HostGroups        []HostGroup        `yaml:"host_groups" json:"host_groups,omitempty"`
	VMGroups          []VMGroup          `yaml:"vm_groups" json:"vm_groups,omitempty"`
	Placement         PlacementPolicy    `yaml:"placement" json:"placement"`
	Rules             []Rule             `yaml:"rules" json:"rules,omitempty"`
	DisruptionBudgets []DisruptionBudget `yaml:"disruption_budgets" json:"disruption_budgets,omitempty"`
	Maintenance       MaintenancePolicy  `yaml:"maintenance" json:"maintenance"`
	Balancing         BalancingPolicy    `yaml:"balancing" json:"balancing"`
	Failover          FailoverPolicy     `yaml:"failover" json:"failover"`
	Health            HealthPolicy       `yaml:"health" json:"health"`
	Recovery          RecoveryPolicy     `yaml:"recovery" json:"recovery"`
	MetricSources     MetricSources      `yaml:"metric_sources" json:"metric_sources"`
	// Windows are the maintenance windows that rollouts and automatic
	// balancing may be held to.
	Windows      []Window            `yaml:"windows" json:"windows,omitempty"`
	Rollout      RolloutPolicy       `yaml:"rollout" json:"rollout"`
	Alertmanager *AlertmanagerPolicy `yaml:"alertmanager,omitempty" json:"alertmanager,omitempty"`
}

// HostGroup names a set of hosts: listed by name, or selected by labels
// (all must match), or both (either admits a host).
type HostGroup struct {
	Name     string            `yaml:"name" json:"name"`
	Hosts    []string          `yaml:"hosts,omitempty" json:"hosts,omitempty"`
	Selector map[string]string `yaml:"selector,omitempty" json:"selector,omitempty"`
}

// VMGroup names a set of VMs: listed by name or id, or matched by a
// shell-style name pattern (path.Match), or both.
type VMGroup struct {
	Name    string   `yaml:"name" json:"name"`
	VMs     []string `yaml:"vms,omitempty" json:"vms,omitempty"`
	Pattern string   `yaml:"pattern,omitempty" json:"pattern,omitempty"`
	// Priority is the availability priority of the group's VMs: higher
	// moves first when memory is equal and restarts first after a crash.
	Priority int `yaml:"priority,omitempty" json:"priority,omitempty"`
}

// Strategies for choosing among feasible hosts.
const (
	StrategySpread = "spread"
	StrategyPack   = "pack"
)

// PlacementPolicy sets the hard limits and the scorer.
type PlacementPolicy struct {
	// MemoryReserve is the share of each host's memory kept free (0 to <1).
	MemoryReserve float64 `yaml:"memory_reserve" json:"memory_reserve"`
	// CPUOvercommit is how many vCPUs of running VMs a logical CPU may
	// carry (0 means no limit).
	CPUOvercommit float64 `yaml:"cpu_overcommit" json:"cpu_overcommit"`
	// Strategy is spread (most free memory first) or pack (least free
	// memory that still fits first).
	Strategy string `yaml:"strategy" json:"strategy"`
}

// Rule types.
const (
	RuleVMAffinity         = "vm-affinity"           // the group's VMs run on one host
	RuleVMAntiAffinity     = "vm-anti-affinity"      // the group's VMs run on different hosts
	RuleVMHostAffinity     = "vm-host-affinity"      // the group's VMs run in the host group
	RuleVMHostAntiAffinity = "vm-host-anti-affinity" // the group's VMs stay out of the host group
)

// Enforcement of a rule.
const (
	Must   = "must"
	Should = "should"
)

// Rule constrains where a VM group runs.
type Rule struct {
	Name        string `yaml:"name" json:"name"`
	Type        string `yaml:"type" json:"type"`
	VMGroup     string `yaml:"vm_group" json:"vm_group"`
	HostGroup   string `yaml:"host_group,omitempty" json:"host_group,omitempty"`
	Enforcement string `yaml:"enforcement" json:"enforcement"`
	// Weight orders should-rules (1 to 100; default 10).
	Weight int `yaml:"weight,omitempty" json:"weight,omitempty"`
}

// DisruptionBudget caps how many VMs of a group move at once.
type DisruptionBudget struct {
	VMGroup      string `yaml:"vm_group" json:"vm_group"`
	MaxMigrating int    `yaml:"max_migrating" json:"max_migrating"`
}

// MaintenancePolicy tunes evacuations.
type MaintenancePolicy struct {
	// Concurrent migrations leaving one host, entering one host, and in
	// the whole cluster.
	PerSource int `yaml:"per_source" json:"per_source"`
	PerTarget int `yaml:"per_target" json:"per_target"`
	Cluster   int `yaml:"cluster" json:"cluster"`
	// Attempts is how often one VM is tried (preferably on another target
	// each time) before the host enters maintenance error.
	Attempts int `yaml:"attempts" json:"attempts"`
	// MigrationTimeout bounds one migration; ShutdownTimeout a guest
	// shutdown before the VM is powered off.
	MigrationTimeout time.Duration `yaml:"migration_timeout" json:"migration_timeout"`
	ShutdownTimeout  time.Duration `yaml:"shutdown_timeout" json:"shutdown_timeout"`
	// NoProgressTimeout fails an operation in which no VM finished for
	// that long.
	NoProgressTimeout time.Duration `yaml:"no_progress_timeout" json:"no_progress_timeout"`
	// RetryBackoff is the pause before a failed VM is tried again.
	RetryBackoff time.Duration `yaml:"retry_backoff" json:"retry_backoff"`
	// MigrateBackOnExit moves every VM that left back when the host leaves
	// maintenance.
	MigrateBackOnExit bool `yaml:"migrate_back_on_exit" json:"migrate_back_on_exit"`
}

// Balancing modes and strategies.
const (
	BalanceOff       = "off"
	BalanceRecommend = "recommend"
	BalanceAutomatic = "automatic"
	BalanceEven      = "evenly-distributed"
	BalancePowerSave = "power-saving"
	BalanceByMemory  = "memory"
	BalanceByCPU     = "cpu"
)

// BalancingPolicy drives the balancer.
type BalancingPolicy struct {
	Mode     string `yaml:"mode" json:"mode"`
	Strategy string `yaml:"strategy" json:"strategy"`
	// Metric is memory, or cpu (from Prometheus, metric_sources.prometheus.cpu_query).
	Metric string `yaml:"metric" json:"metric"`
	// Threshold: balance when the most loaded host's utilisation exceeds
	// the mean by more than this share (0 to 1).
	Threshold float64 `yaml:"threshold" json:"threshold"`
	// MinGain: a move must lower the imbalance by at least this share.
	MinGain  float64       `yaml:"min_gain" json:"min_gain"`
	MaxMoves int           `yaml:"max_moves" json:"max_moves"`
	Interval time.Duration `yaml:"interval" json:"interval"`
	// Hold: a VM that balancing moved is not moved by balancing again for
	// this long (0: no hold), so that no round undoes an earlier one.
	Hold time.Duration `yaml:"hold" json:"hold"`
	// TargetUtilisation is how full power-saving packs a host, 0 to 1:
	// memory of running VMs and their vCPUs (over CPUs, times
	// placement.cpu_overcommit when above 1) stay at or below this share,
	// leaving headroom as DPM's target utilisation does.
	TargetUtilisation float64 `yaml:"target_utilisation" json:"target_utilisation"`
	// Window names a maintenance window (windows:): automatic balancing
	// starts moves only while it is open. Empty: at any time.
	Window string `yaml:"window,omitempty" json:"window,omitempty"`
}

// HealthPolicy sets how signals become a host's health: how long a host
// must look bad before it is suspect and dead, and how long it must look
// good again before it is alive (damping flaps).
type HealthPolicy struct {
	SuspectAfter time.Duration `yaml:"suspect_after" json:"suspect_after"`
	DeadAfter    time.Duration `yaml:"dead_after" json:"dead_after"`
	AliveAfter   time.Duration `yaml:"alive_after" json:"alive_after"`
	// DownQuery (PromQL, asked of metric_sources.prometheus) returns one
	// sample per host that looks down, such as `up{job="node"} == 0`: a
	// bad signal like a lost manager connection (alone it makes a host
	// suspect, never dead).
	DownQuery string `yaml:"down_query,omitempty" json:"down_query,omitempty"`
	// DegradedQuery returns one sample per host whose hardware is failing,
	// such as `increase(node_edac_uncorrectable_errors_total[10m]) > 0`:
	// such a host is evacuated through maintenance before it dies.
	DegradedQuery string `yaml:"degraded_query,omitempty" json:"degraded_query,omitempty"`
}

// FailoverPolicy is admission control for host failures.
type FailoverPolicy struct {
	// MinHostFailures is how many of the largest hosts the cluster must be
	// able to lose and still place every VM; entering maintenance that
	// would drop below it is refused unless forced.
	MinHostFailures int `yaml:"min_host_failures" json:"min_host_failures"`
}

// MetricSources are where Herd reads metrics from.
type MetricSources struct {
	Prometheus *PrometheusSource `yaml:"prometheus,omitempty" json:"prometheus,omitempty"`
}

// PrometheusSource is a Prometheus server queried with PromQL.
type PrometheusSource struct {
	URL     string        `yaml:"url" json:"url"`
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
	// CPUQuery returns one sample per host with a label naming it
	// (HostLabel), valued 0 to 1: the host's CPU utilisation.
	CPUQuery  string `yaml:"cpu_query,omitempty" json:"cpu_query,omitempty"`
	HostLabel string `yaml:"host_label" json:"host_label,omitempty"`
}

// Fencing method types.
const (
	// FencePower runs a fence-agent program (fence_ipmilan, fence_redfish,
	// …) that powers the host off and confirms it with "status".
	FencePower = "power"
	// FenceLease confirms a host whose agent's lease expired: the agent
	// stopped its VMs when it could not renew.
	FenceLease = "lease"
	// FenceDev powers off a dev-mode simulator host (herd server -dev only).
	FenceDev = "dev"
)

// RecoveryPolicy says when and how the VMs of a dead host are recreated
// elsewhere. A host is recovered only once a fencing method confirmed it
// is off, or an operator did (PUT /v1/hosts/{host}/status OFFLINE with
// confirm_fenced).
type RecoveryPolicy struct {
	// Automatic: fence and recover dead hosts without waiting for an
	// operator (default true). When false only an operator's confirmation
	// starts a recovery.
	Automatic bool `yaml:"automatic" json:"automatic"`
	// StormThreshold: when more than this share of the hosts are dead at
	// once, the management network is the likelier cause — nothing is
	// fenced automatically (default 0.5). Hosts fenced within the last two
	// dead_after count as dead, and a dead host's fencing waits up to
	// dead_after while suspect hosts could tip the share over it.
	StormThreshold float64 `yaml:"storm_threshold" json:"storm_threshold"`
	// LeaseTTL is how long an agent's lease lasts after each renewal; an
	// agent that cannot renew for that long stops its VMs.
	LeaseTTL time.Duration `yaml:"lease_ttl" json:"lease_ttl"`
	// LeaseMargin is added on the servers' side before an expired lease
	// counts as fencing: clock rate drift and scheduling (the agent starts
	// stopping its VMs a tenth of the TTL before its lease ends).
	LeaseMargin time.Duration `yaml:"lease_margin" json:"lease_margin"`
	// ReservedHostGroup names the failover hosts, tried first for
	// recreated VMs.
	ReservedHostGroup string `yaml:"reserved_host_group,omitempty" json:"reserved_host_group,omitempty"`
	// ExcludeVMGroups are not recreated (their VMs wait for their host).
	ExcludeVMGroups []string `yaml:"exclude_vm_groups,omitempty" json:"exclude_vm_groups,omitempty"`
	// RetryBackoff is the first pause before a VM that could not be
	// recreated is tried again; it doubles up to MaxBackoff. Recovery
	// never gives up.
	RetryBackoff time.Duration `yaml:"retry_backoff" json:"retry_backoff"`
	MaxBackoff   time.Duration `yaml:"max_backoff" json:"max_backoff"`
	// Concurrent recreations in the whole cluster.
	Concurrency int `yaml:"concurrency" json:"concurrency"`
	// Fencing is the chain, tried in order until one method confirms.
	// Empty: the agent lease alone.
	Fencing []FenceMethod `yaml:"fencing,omitempty" json:"fencing,omitempty"`
}

// FenceMethod is one link of the fencing chain.
type FenceMethod struct {
	Name string `yaml:"name" json:"name"`
	// Type is power, lease or dev.
	Type string `yaml:"type" json:"type"`
	// Hosts and HostGroup say which hosts the method covers; neither: all.
	Hosts     []string `yaml:"hosts,omitempty" json:"hosts,omitempty"`
	HostGroup string   `yaml:"host_group,omitempty" json:"host_group,omitempty"`
	// Agent is the fence-agent program (a path, or a name looked up in
	// /usr/sbin and PATH), for type power.
	Agent string `yaml:"agent,omitempty" json:"agent,omitempty"`
	// Params go to the agent on stdin as key=value; "{host}" in a value
	// is replaced by the host's name.
	Params map[string]string `yaml:"params,omitempty" json:"params,omitempty"`
	// HostParams add or override parameters per host (its BMC address).
	HostParams map[string]map[string]string `yaml:"host_params,omitempty" json:"host_params,omitempty"`
	// SecretFiles name parameters read from files at each run
	// (password: /etc/herd/secrets/ipmi): never stored in the policy.
	SecretFiles map[string]string `yaml:"secret_files,omitempty" json:"secret_files,omitempty"`
	// Timeout bounds one agent run; ConfirmTimeout how long "status" is
	// asked until it says off.
	Timeout        time.Duration `yaml:"timeout" json:"timeout"`
	ConfirmTimeout time.Duration `yaml:"confirm_timeout" json:"confirm_timeout"`
}

// Backoff is the pause after a VM's attempts-th failed recreation: the
// retry backoff, doubled after each failure, up to the maximum.
func (r RecoveryPolicy) Backoff(attempts int) time.Duration {
	b := r.RetryBackoff
	for i := 1; i < attempts && b < r.MaxBackoff; i++ {
		b *= 2
	}
	return min(b, r.MaxBackoff)
}
