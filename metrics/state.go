package metrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// Host admin statuses, maintenance states and health states, so that every
// state series exists (as 0) and dashboards can sum them.
var (
	AdminStatuses     = []string{"AVAILABLE", "NOT_ACCEPTING", "MAINTENANCE", "OFFLINE"}
	MaintenanceStates = []string{"off", "entering", "on", "error", "cancelled", "exiting"}
	HealthStates      = []string{"unknown", "alive", "suspect", "dead", "fenced"}
	PowerStates       = []string{"running", "stopped", "suspended"}
)

// HostSample is one host at scrape time.
type HostSample struct {
	Name, Driver, Admin, Maintenance, Health string
	Connected                                bool
	MemoryBytes, MemoryUsedBytes             int64
	CPUs, VCPUsUsed                          int
	VMs, RunningVMs                          int
	// StaleCopies counts the leftovers of recovered VMs the host holds
	// (destroyed when it returns): not VMs.
	StaleCopies int
	// FencingFailed: the host is dead and no fencing method confirmed it.
	FencingFailed bool
	// LeaseArmed: an agent on the host holds a lease.
	LeaseArmed bool
}

// StateSample is the replicated state at scrape time.
type StateSample struct {
	Hosts []HostSample
	// VMsByPower counts VMs by power state.
	VMsByPower map[string]int
	Events     int
	// EvacuationRemaining counts, per host being evacuated, the VMs whose
	// step has not ended.
	EvacuationRemaining map[string]int
	// Operations counts operations by kind and state.
	Operations map[[2]string]int
	// FailoverCapacity is how many of the largest hosts the cluster can
	// lose and still place every VM; FailoverMin the policy's minimum.
	FailoverCapacity, FailoverMin int
	// RecoveryVMs counts the VMs of running recoveries by state: pending,
	// running, blocked (pending after a failed attempt).
	RecoveryVMs map[string]int
}

// RecoveryStates bound the labels of herd_recovery_vms.
var RecoveryStates = []string{"pending", "running", "blocked"}

// OperationKinds and OperationStates bound the labels of herd_operations.
var (
	OperationKinds  = []string{"evacuate", "exit", "migrate", "balance", "recover"}
	OperationStates = []string{"running", "succeeded", "failed", "cancelled"}
)

// RaftSample is this server's raft view at scrape time.
type RaftSample struct {
	IsLeader        bool
	HasLeader       bool
	State           string // Follower, Candidate, Leader, Shutdown
	Servers         int
	CommitIndex     uint64
	AppliedIndex    uint64
	LastContactSecs float64
	// Ready: this server has a leader, is in touch with it and has caught
	// up (what /readyz says).
	Ready bool
	// FailureTolerance is how many voters may fail while a healthy majority
	// stays, as the leader's autopilot sees it; HasTolerance only there.
	FailureTolerance int
	HasTolerance     bool
}

var (
	descHosts       = prometheus.NewDesc("herd_hosts", "Hosts in the inventory.", nil, nil)
	descVMs         = prometheus.NewDesc("herd_vms", "VMs in the inventory, by power state.", []string{"power_state"}, nil)
	descEvents      = prometheus.NewDesc("herd_events_retained", "Events held in the action log.", nil, nil)
	descRemaining   = prometheus.NewDesc("herd_evacuation_vms_remaining", "VMs of a host being evacuated whose step has not ended.", []string{"host"}, nil)
	descOperations  = prometheus.NewDesc("herd_operations", "Operations held in the state, by kind and state.", []string{"kind", "state"}, nil)
	descFailover    = prometheus.NewDesc("herd_cluster_failover_capacity_hosts", "How many of the largest hosts the cluster can lose at once and still place every running VM.", nil, nil)
	descLeases      = prometheus.NewDesc("herd_agent_leases", "Hosts whose agent holds a lease (lease fencing armed).", nil, nil)
	descRecoveryVMs = prometheus.NewDesc("herd_recovery_vms", "VMs of running recoveries, by state (blocked: pending after a failed attempt).", []string{"state"}, nil)
	descFailoverMin = prometheus.NewDesc("herd_cluster_failover_capacity_min_hosts", "The policy's minimum failover capacity (failover.min_host_failures).", nil, nil)

	descLeader      = prometheus.NewDesc("herd_raft_leader", "1 when this server is the raft leader.", nil, nil)
	descHasLeader   = prometheus.NewDesc("herd_raft_has_leader", "1 when this server knows a raft leader.", nil, nil)
	descRaftState   = prometheus.NewDesc("herd_raft_state", "1 for this server's raft state, 0 for the others.", []string{"state"}, nil)
	descServers     = prometheus.NewDesc("herd_raft_servers", "Servers in the raft configuration.", nil, nil)
	descCommit      = prometheus.NewDesc("herd_raft_commit_index", "Raft commit index seen by this server.", nil, nil)
	descApplied     = prometheus.NewDesc("herd_raft_applied_index", "Raft index applied to this server's state.", nil, nil)
	descLastContact = prometheus.NewDesc("herd_raft_last_contact_seconds", "Seconds since this follower last heard from the leader (0 on the leader).", nil, nil)
	descReady       = prometheus.NewDesc("herd_raft_ready", "1 when this server has a leader, is in touch with it and has caught up (what /readyz says).", nil, nil)
	descTolerance   = prometheus.NewDesc("herd_raft_failure_tolerance", "How many voters may fail while a healthy majority stays, as the leader sees it (leader only).", nil, nil)
)

// stateCollector reports this server's raft, policy and gossip view. The
// state families (cluster-wide and per host) come from one state sample per
// scrape, taken by Handler; they are described here so that their names are
// known to the registry before a scrape. Cardinality grows with hosts,
// never with VMs.
type stateCollector struct {
	raft   func() RaftSample
	policy func() PolicySample
	gossip func() map[string]int
}

// stateDescs are the cluster-wide state families sampleCollector reports.
var stateDescs = []*prometheus.Desc{descHosts, descVMs, descEvents, descRemaining, descOperations, descFailover, descFailoverMin,
	descLeases, descRecoveryVMs}

// GossipStates bound the labels of herd_gossip_members. memberlist lists
// only the members it holds alive (a suspect one among them, unmarked);
// dead and left ones drop out, so "alive" is the only state it can show.
var GossipStates = []string{"alive"}

var descGossip = prometheus.NewDesc("herd_gossip_members", "Gossip members this server holds alive, suspect ones included (0 without gossip); suspicions are counted in herd_gossip_probe_failures_total.", []string{"state"}, nil)

var (
	descPolicyVersion = prometheus.NewDesc("herd_policy_version", "Version of the policy in force (0: defaults, none applied).", nil, nil)
	descPolicyDrift   = prometheus.NewDesc("herd_policy_drift", "1 when this server's policy file differs from the policy in force.", nil, nil)
	descReloadOK      = prometheus.NewDesc("herd_policy_last_reload_success", "1 when the last reload of this server's policy file succeeded.", nil, nil)
	descReloadTime    = prometheus.NewDesc("herd_policy_last_reload_timestamp_seconds", "When this server last reloaded its policy file.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	own := []*prometheus.Desc{descLeader, descHasLeader, descRaftState, descServers, descCommit, descApplied, descLastContact, descReady, descTolerance,
		descPolicyVersion, descPolicyDrift, descReloadOK, descReloadTime, descGossip}
	for _, d := range slices.Concat(hostDescs, stateDescs, own) {
		ch <- d
	}
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func oneOf(ch chan<- prometheus.Metric, d *prometheus.Desc, host, value string, all []string) {
	for _, s := range all {
		if host == "" {
			ch <- gauge(d, b2f(s == value), s)
		} else {
			ch <- gauge(d, b2f(s == value), host, s)
		}
	}
}

// sampleCollector reports the cluster-wide state families of one sample.
type sampleCollector struct{ s *StateSample }

func (c *sampleCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range stateDescs {
		ch <- d
	}
}

func (c *sampleCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	leases := 0
	for _, h := range s.Hosts {
		if h.LeaseArmed {
			leases++
		}
	}
	ch <- gauge(descLeases, float64(leases))
	for _, st := range RecoveryStates {
		ch <- gauge(descRecoveryVMs, float64(s.RecoveryVMs[st]), st)
	}
	ch <- gauge(descHosts, float64(len(s.Hosts)))
	for _, p := range PowerStates {
		ch <- gauge(descVMs, float64(s.VMsByPower[p]), p)
	}
	ch <- gauge(descEvents, float64(s.Events))
	for host, n := range s.EvacuationRemaining {
		ch <- gauge(descRemaining, float64(n), host)
	}
	ch <- gauge(descFailover, float64(s.FailoverCapacity))
	ch <- gauge(descFailoverMin, float64(s.FailoverMin))
	for _, k := range OperationKinds {
		for _, st := range OperationStates {
			ch <- gauge(descOperations, float64(s.Operations[[2]string{k, st}]), k, st)
		}
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	if c.raft != nil {
		r := c.raft()
		ch <- gauge(descLeader, b2f(r.IsLeader))
		ch <- gauge(descHasLeader, b2f(r.HasLeader))
		oneOf(ch, descRaftState, "", r.State, []string{"Follower", "Candidate", "Leader", "Shutdown"})
		ch <- gauge(descServers, float64(r.Servers))
		ch <- gauge(descCommit, float64(r.CommitIndex))
		ch <- gauge(descApplied, float64(r.AppliedIndex))
		ch <- gauge(descLastContact, r.LastContactSecs)
		ch <- gauge(descReady, b2f(r.Ready))
		if r.HasTolerance {
			ch <- gauge(descTolerance, float64(r.FailureTolerance))
		}
	}
	if c.gossip != nil {
		g := c.gossip()
		for _, st := range GossipStates {
			ch <- gauge(descGossip, float64(g[st]), st)
		}
	}
	if c.policy != nil {
		p := c.policy()
		ch <- gauge(descPolicyVersion, float64(p.Version))
		ch <- gauge(descPolicyDrift, b2f(p.Drift))
		ch <- gauge(descReloadOK, b2f(p.LastReloadOK))
		ch <- gauge(descReloadTime, p.LastReloadTime)
	}
}
