// Package api holds the JSON shapes of Herd's HTTP API v1 and a client for
// it. The server in package daemon answers with these types; the CLI reads
// them.
package api

import (
	"time"
)

// Error is the body of every error answer.
type Error struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
	// Blockers explain a 409 refusal of a maintenance request.
	Blockers []Blocker `json:"blockers,omitempty"`
	// Errors lists every problem of a refused policy, with its position.
	Errors []ErrorDetail `json:"errors,omitempty"`
}

// ErrorDetail is one problem in a document.
type ErrorDetail struct {
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}

// PolicyInfo is the answer to applying a policy.
type PolicyInfo struct {
	Version int       `json:"version"`
	Hash    string    `json:"hash"`
	Source  string    `json:"source,omitempty"`
	Updated time.Time `json:"updated,omitempty"`
}

// EventRequest is the body of POST /v1/events: a note in the action log.
type EventRequest struct {
	Type    string `json:"type"`
	Host    string `json:"host,omitempty"`
	VM      string `json:"vm,omitempty"`
	Message string `json:"message"`
	// Actor, for a server recording its own event through the leader.
	Actor string `json:"actor,omitempty"`
}

// Blocker is one reason an operation cannot start.
type Blocker struct {
	VM     string `json:"vm,omitempty"`
	Reason string `json:"reason"`
}

// Host is a host with what its VMs take.
type Host struct {
	Name string `json:"name"`
	// Driver is the name of the driver instance (from herd.yaml) that
	// manages the host.
	Driver string `json:"driver"`
	// Group is the driver's own grouping (a vSphere cluster): VMs move only
	// between hosts of one group.
	Group       string            `json:"group,omitempty"`
	Admin       AdminStatus       `json:"admin_status"`
	AdminReason string            `json:"admin_reason,omitempty"`
	Maintenance MaintenanceState  `json:"maintenance_state"`
	Operation   string            `json:"operation,omitempty"`
	Health      HostHealth        `json:"health"`
	Connection  Connection        `json:"connection"`
	MemoryBytes int64             `json:"memory_bytes"`
	CPUs        int               `json:"cpus"`
	CPUMHz      int64             `json:"cpu_mhz"`
	Labels      map[string]string `json:"labels,omitempty"`
	// DownSince is when the host's health last turned dead (zero while it
	// is not dead or fenced).
	DownSince time.Time `json:"down_since,omitempty"`
	// FencedBy is the fencing method that confirmed the host is off
	// (power, lease, dev, operator) while its health is fenced.
	FencedBy string `json:"fenced_by,omitempty"`
	// FenceFailure says why no fencing method confirmed a dead host.
	FenceFailure string `json:"fence_failure,omitempty"`
	// LeaseTTL is set while the host's agent holds a lease.
	LeaseTTL time.Duration `json:"lease_ttl,omitempty"`
	// Seen is when inventory sync last changed the host's hardware facts.
	Seen time.Time `json:"seen"`

	// What the host's VMs take.
	VMs             int   `json:"vms"`
	RunningVMs      int   `json:"running_vms"`
	MemoryUsedBytes int64 `json:"memory_used_bytes"` // of running VMs
	VCPUsUsed       int   `json:"vcpus_used"`        // of running VMs

	// Empty: no VM runs on the host (stopped VMs may still be registered,
	// see vms). A host in maintenance is never called empty, or ready to
	// power off, while one runs.
	Empty bool `json:"empty"`
	// MaintenanceNote says, for a host in maintenance, whether it is empty
	// or how many VMs still run on it.
	MaintenanceNote string `json:"maintenance_note,omitempty"`
	// StaleCopies counts what the host still holds of VMs recreated
	// elsewhere after it was fenced (not VMs: destroyed when it returns).
	StaleCopies int `json:"stale_copies"`
	// Stale lists them (GET /v1/hosts/{host} only).
	Stale []StaleCopyView `json:"stale,omitempty"`
	// NotFenced says why a dead host is not fenced (storm guard, no VMs,
	// fencing failed: reason…); empty unless the host is dead.
	NotFenced string `json:"not_fenced,omitempty"`
	// Silence is the Alertmanager silence Herd keeps for the host while it
	// is in maintenance, as recorded when made or last extended (GET
	// /v1/hosts/{host} only).
	Silence *Silence `json:"silence,omitempty"`
}

// Silence is the Alertmanager silence of a host in maintenance.
type Silence struct {
	Host string `json:"host"`
	// ID is Alertmanager's id of the silence.
	ID string `json:"id"`
	// Operation is the maintenance operation the silence was made or last
	// extended for ("" for an admin status MAINTENANCE set by hand).
	Operation string    `json:"operation,omitempty"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
}

// StaleCopyView is one stale copy: the leftover of VM (its Herd id) on a
// fenced host. Its power is unknown until the host answers; it is only
// ever destroyed.
type StaleCopyView struct {
	// VM is the Herd id of the VM it is a leftover of.
	VM string `json:"vm"`
	// ID is the driver's id of the leftover.
	ID     string `json:"id"`
	Name   string `json:"name"`
	Host   string `json:"host"`
	Driver string `json:"driver"`
	// Since is when the VM was recreated elsewhere.
	Since time.Time `json:"since"`
	// VMHost is where the VM itself is now.
	VMHost string `json:"vm_host,omitempty"`
	Power  string `json:"power_state"`
}

// Hosts is the answer of GET /v1/hosts.
type Hosts struct {
	Hosts []Host `json:"hosts"`
}

// VMs is the answer of GET /v1/vms.
type VMs struct {
	VMs []VMView `json:"vms"`
}

// VMView is a VM without its (possibly large) definition.
type VMView struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Host        string     `json:"host"`
	Driver      string     `json:"driver"`
	MemoryBytes int64      `json:"memory_bytes"`
	VCPUs       int        `json:"vcpus"`
	Power       PowerState `json:"power_state"`
	// Priority is the effective availability priority: the highest of the
	// VM's own and its policy groups' (what recovery and maintenance use).
	Priority  int    `json:"priority"`
	Unmovable string `json:"unmovable,omitempty"`
	Autostart bool   `json:"autostart,omitempty"`
	// Groups are the policy's vm groups the VM is in.
	Groups []string `json:"groups,omitempty"`
}

// Events is the answer of GET /v1/events.
type Events struct {
	Events []Event `json:"events"`
}

// Event is one entry in the action log.
type Event struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Type      string    `json:"type"`
	Actor     string    `json:"actor"`
	Host      string    `json:"host,omitempty"`
	VM        string    `json:"vm,omitempty"`
	Operation string    `json:"operation,omitempty"`
	Message   string    `json:"message"`
	// Target is, for an event about a VM moving or being recreated or
	// registered elsewhere, the host it goes to (Host is where it comes
	// from).
	Target string `json:"target,omitempty"`
}

// Cluster is the answer of GET /v1/cluster.
type Cluster struct {
	// Self is the server that answered.
	Self      Self     `json:"self"`
	Leader    string   `json:"leader"`
	LeaderAPI string   `json:"leader_api,omitempty"`
	Servers   []Server `json:"servers"`
	Index     uint64   `json:"applied_index"`
	Hosts     int      `json:"hosts"`
	VMs       int      `json:"vms"`
	// Discovered lists servers this one learned of while forming a cluster.
	Discovered []Self `json:"discovered,omitempty"`
	// Policy is the policy in force, and this server's own file.
	Policy PolicyStatus `json:"policy"`
	// Gossip lists the gossip pool as this server sees it.
	Gossip []GossipMember `json:"gossip,omitempty"`
}

// GossipMember is one gossip member as the answering server sees it.
type GossipMember struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	// State is "alive": memberlist lists only the members it has not
	// declared dead or left.
	State string     `json:"state"`
	Meta  MemberMeta `json:"meta"`
}

// MemberMeta is what a gossip member says of itself.
type MemberMeta struct {
	Role string `json:"role"`
	// Host is the hypervisor host an agent runs on.
	Host string `json:"host,omitempty"`
	// API is a server's API address.
	API string `json:"api,omitempty"`
	// Hypervisor is an agent's view of its local hypervisor (ok, down).
	Hypervisor string `json:"hypervisor,omitempty"`
}

// PolicyStatus is the policy in force as one server sees it.
type PolicyStatus struct {
	Version    int       `json:"version"`
	Hash       string    `json:"hash"`
	File       string    `json:"file"`
	FileHash   string    `json:"file_hash,omitempty"`
	Drift      bool      `json:"drift"`
	LastReload time.Time `json:"last_reload,omitempty"`
	ReloadOK   bool      `json:"last_reload_ok"`
	ReloadErr  string    `json:"last_reload_error,omitempty"`
}

// Self describes one server.
type Self struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	// Clustered is true once the server is part of a raft configuration.
	Clustered bool `json:"clustered"`
}

// Server is one raft voter as the cluster sees it.
type Server struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr,omitempty"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
	// Health is the leader's view of the server; nil when the server that
	// answered does not lead (ask with ?stale=false).
	Health *ServerHealth `json:"health,omitempty"`
}

// ServerHealth is one server as the leader sees it (autopilot).
type ServerHealth struct {
	// Suffrage: leader, voter, non-voter or staging.
	Suffrage string `json:"suffrage"`
	// Up: the server answered the leader's last probe.
	Up bool `json:"up"`
	// Unknown: the leader has not probed it yet (it just took over, or the
	// server's API address is not registered yet): neither up nor down.
	Unknown bool `json:"unknown,omitempty"`
	// Reason says why a server is not up.
	Reason string `json:"reason,omitempty"`
	// Healthy: up, in touch with the leader and caught up; a non-voter is
	// promoted once healthy for the stabilization time.
	Healthy     bool      `json:"healthy"`
	StableSince time.Time `json:"stable_since,omitzero"`
	// LastContact is how long ago the server last heard from the leader,
	// as it reported; LastAnswer when it last answered the leader.
	LastContactMillis int64     `json:"last_contact_ms"`
	LastAnswer        time.Time `json:"last_answer,omitzero"`
	LastIndex         uint64    `json:"last_index"`
	// LogLag is how many log entries it is behind the leader.
	LogLag uint64 `json:"log_lag"`
}

// ServerStats is GET /v1/cluster/self: this server's raft position (what
// the leader's autopilot and a follower's readiness check read).
type ServerStats struct {
	ID   string    `json:"id"`
	Raft RaftStats `json:"raft"`
}

// RaftStats is a server's raft position.
type RaftStats struct {
	State        string `json:"state"`
	Term         uint64 `json:"term"`
	LastLogIndex uint64 `json:"last_log_index"`
	LastLogTerm  uint64 `json:"last_log_term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// LastContactMillis is how long ago a follower last heard from the
	// leader: 0 on the leader, -1 on a server that never has.
	LastContactMillis int64 `json:"last_contact_ms"`
}

// JoinRequest is the body of POST /v1/cluster/join.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
}

// JoinResult answers POST /v1/cluster/join.
type JoinResult struct {
	ID      string `json:"id"`
	Voter   bool   `json:"voter"`
	Message string `json:"message"`
}

// Health is the answer of /healthz and /readyz.
type Health struct {
	Status string    `json:"status"`
	Reason string    `json:"reason,omitempty"`
	Time   time.Time `json:"time"`
}

// StatusRequest is the body of PUT /v1/hosts/{host}/status.
type StatusRequest struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// ConfirmFenced is an operator's word that an OFFLINE host is powered
	// off or isolated, so its VMs may be recreated elsewhere.
	ConfirmFenced bool `json:"confirm_fenced,omitempty"`
}

// MaintenanceRequest is the body of PUT /v1/hosts/{host}/maintenance (and,
// with status enable, of POST …/maintenance/precheck).
type MaintenanceRequest struct {
	// Status is enable or disable.
	Status string `json:"status"`
	// Enable: none (default), active-only or all.
	Migrate     string   `json:"migrate,omitempty"`
	TargetHost  string   `json:"target_host,omitempty"`
	ShutdownVMs []string `json:"shutdown_vms,omitempty"`
	// Force enters maintenance even when the failover capacity drops below
	// the policy's minimum.
	Force bool `json:"force,omitempty"`
	// Disable: VMs (ids or names) to power on or bring back.
	PowerOnVMs            []string `json:"poweron_vms,omitempty"`
	LiveMigrateBackVMs    []string `json:"live_migrate_back_vms,omitempty"`
	OfflineMigrateBackVMs []string `json:"offline_migrate_back_vms,omitempty"`
}

// OperationRef is the answer to a request that started an operation.
type OperationRef struct {
	Operation string `json:"operation"`
}

// PrecheckItem is one VM in a precheck.
type PrecheckItem struct {
	VM          string `json:"vm"`
	Name        string `json:"name"`
	Action      string `json:"action"`
	Target      string `json:"target,omitempty"`
	MemoryBytes int64  `json:"memory_bytes"`
	Reason      string `json:"reason,omitempty"`
}

// Precheck is the answer of POST /v1/hosts/{host}/maintenance/precheck.
type Precheck struct {
	Host              string         `json:"host"`
	LiveMigrateVMs    []PrecheckItem `json:"live_migrate_vms"`
	OfflineMigrateVMs []PrecheckItem `json:"offline_migrate_vms"`
	ShutdownVMs       []PrecheckItem `json:"shutdown_vms"`
	StayVMs           []PrecheckItem `json:"stay_vms"`
	Blockers          []Blocker      `json:"blockers"`
}

// LeftVM is a VM that left a host for its maintenance, and where it is now.
type LeftVM struct {
	VM          string `json:"vm"`
	Name        string `json:"name"`
	Action      string `json:"action"`
	MovedTo     string `json:"moved_to,omitempty"`
	NowOn       string `json:"now_on"`
	PowerState  string `json:"power_state"`
	MemoryBytes int64  `json:"memory_bytes"`
}

// ExitPrecheck is the answer of GET /v1/hosts/{host}/maintenance/exit-precheck.
type ExitPrecheck struct {
	Host               string   `json:"host"`
	Operation          string   `json:"operation,omitempty"`
	ShutdownVMs        []LeftVM `json:"shutdown_vms"`
	LiveMigratedVMs    []LeftVM `json:"live_migrated_vms"`
	OfflineMigratedVMs []LeftVM `json:"offline_migrated_vms"`
	// MigrateBackOnExit says the policy brings every moved VM back.
	MigrateBackOnExit bool `json:"migrate_back_on_exit"`
}

// MigrateRequest is the body of POST /v1/vms/{vm}/migrate.
type MigrateRequest struct {
	// TargetHost; Herd chooses when empty.
	TargetHost string `json:"target_host,omitempty"`
	// DryRun only says where the VM would go (200 MigratePlan).
	DryRun bool `json:"dry_run,omitempty"`
}

// MigratePlan says where a migration goes: the answer of a dry run, and
// part of the answer that starts it.
type MigratePlan struct {
	VM     string `json:"vm"`
	Action string `json:"action"`
	From   string `json:"from"`
	Target string `json:"target,omitempty"`
	// Chosen: Herd chose the target (another host if that one fails).
	Chosen bool `json:"chosen"`
}

// MigrateResult answers a migration that started.
type MigrateResult struct {
	OperationRef
	MigratePlan
}

// Operation is an evacuation, an exit from maintenance, a migration, a
// balancing run or a recovery, with every VM's step and the totals.
type Operation struct {
	ID   string `json:"id"`
	Kind OpKind `json:"kind"`
	Host string `json:"host,omitempty"`
	// Parent is, for an exit, the evacuation it undoes.
	Parent     string    `json:"parent,omitempty"`
	State      OpState   `json:"state"`
	Migrate    string    `json:"migrate,omitempty"`
	TargetHost string    `json:"target_host,omitempty"`
	Actor      string    `json:"actor"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
	// Progress is when an item last finished (or the start).
	Progress time.Time `json:"progress"`
	Error    string    `json:"error,omitempty"`
	// MaxAttempts per VM, fixed when the operation starts (0: the default).
	MaxAttempts int `json:"max_attempts,omitempty"`
	// Detected is, for a recovery, when the host's failure was first seen.
	Detected time.Time `json:"detected,omitempty"`
	Items    []OpItem  `json:"items"`

	Total   int `json:"total"`
	Done    int `json:"done"`
	Running int `json:"running"`
	Pending int `json:"pending"`
	Failed  int `json:"failed"`
	// Cancelled counts the cancelled items (whether the operation was
	// cancelled is State, or Stopping while it runs).
	Cancelled int `json:"cancelled"`
	// Stopping: the operation was cancelled and its steps in flight are
	// ending; nothing new starts.
	Stopping bool `json:"stopping,omitempty"`
}

// OpItem is one VM's step in an operation.
type OpItem struct {
	VM          string `json:"vm"`
	Name        string `json:"name"`
	Action      string `json:"action"`
	From        string `json:"from"`
	MemoryBytes int64  `json:"memory_bytes"`
	Priority    int    `json:"priority"`
	// Planned is the target a planner chose ahead (balancing).
	Planned string `json:"planned,omitempty"`
	Target  string `json:"target,omitempty"`
	// NewID is, for a recreated VM, the ID of the new copy.
	NewID string `json:"new_id,omitempty"`
	// WasRunning is, for a VM waiting for its host, whether it ran before
	// the crash.
	WasRunning bool      `json:"was_running,omitempty"`
	State      ItemState `json:"state"`
	Attempts   int       `json:"attempts"`
	// TargetLosses counts the failures not counted as attempts because
	// their target host was lost.
	TargetLosses int `json:"target_losses,omitempty"`
	// SourceLosses counts the failures not counted as attempts because the
	// connection to the VM's host dropped.
	SourceLosses int       `json:"source_losses,omitempty"`
	Tried        []string  `json:"tried,omitempty"`
	Error        string    `json:"error,omitempty"`
	Started      time.Time `json:"started,omitempty"`
	Finished     time.Time `json:"finished,omitempty"`
}

// Operations is the answer of GET /v1/operations.
type Operations struct {
	Operations []Operation `json:"operations"`
}

// BalancePlan is the answer of GET /v1/balance/plan.
type BalancePlan struct {
	Mode     string  `json:"mode"`
	Strategy string  `json:"strategy"`
	Metric   string  `json:"metric"`
	Before   float64 `json:"imbalance_before"`
	After    float64 `json:"imbalance_after"`
	// SpreadBefore and SpreadAfter are the coefficient of variation of the
	// host utilisations (standard deviation over mean), as Proxmox CRS
	// reports it.
	SpreadBefore float64 `json:"spread_before"`
	SpreadAfter  float64 `json:"spread_after"`
	Threshold    float64 `json:"threshold"`
	// Violations are the VMs whose host breaks a must rule, fixed by the
	// first moves (or why not).
	Violations []RuleViolation `json:"violations,omitempty"`
	Moves      []BalanceMove   `json:"moves"`
	// EmptyHosts are hosts a power-saving plan empties, to power off.
	EmptyHosts []string  `json:"empty_hosts,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Note       string    `json:"note,omitempty"`
	Time       time.Time `json:"time"`
	// Window is balancing.window now; automatic balancing starts moves
	// only while it is open.
	Window *WindowState `json:"window,omitempty"`
}

// RuleViolation is a VM whose current host breaks a must rule.
type RuleViolation struct {
	VM     string `json:"vm"`
	Name   string `json:"name"`
	Host   string `json:"host"`
	Rule   string `json:"rule"`
	Reason string `json:"reason"`
	Fix    string `json:"fix,omitempty"` // the host the plan moves it to
	Why    string `json:"why,omitempty"` // why it cannot be fixed now
}

// BalanceMove is one recommended migration.
type BalanceMove struct {
	VM          string  `json:"vm"`
	Name        string  `json:"name"`
	From        string  `json:"from"`
	To          string  `json:"to"`
	MemoryBytes int64   `json:"memory_bytes"`
	Offline     bool    `json:"offline,omitempty"` // a stopped VM, moved offline
	Rule        string  `json:"rule,omitempty"`    // the must rule the move fixes
	Gain        float64 `json:"gain"`
}

// LeaseRequest is the body of PUT /v1/hosts/{host}/lease: an agent renews
// its host's lease.
type LeaseRequest struct {
	// Agent is the agent's gossip name.
	Agent string `json:"agent"`
	// TTL is the lease the agent holds itself to from this request on:
	// the servers record at least that much before lease expiry counts as
	// fencing. Zero asks for the TTL without arming lease fencing (an
	// agent's first call, before it can keep its side of the bargain).
	TTL time.Duration `json:"ttl,omitempty"`
}

// Lease answers a renewal: the agent's lease lasts TTL from when it sent
// the request.
type Lease struct {
	Host string `json:"host"`
	// TTL is the lease to hold from now on.
	TTL time.Duration `json:"ttl"`
	// Armed: lease expiry fences this host.
	Armed  bool   `json:"armed"`
	Leader string `json:"leader"`
}

// Item returns the index of vm's item, or -1.
func (o *Operation) Item(vm string) int {
	for i := range o.Items {
		if o.Items[i].VM == vm {
			return i
		}
	}
	return -1
}
