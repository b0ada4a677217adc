// Package handlers answers the HTTP API's requests, one file per resource
// (hosts, VMs, operations, maintenance, rollouts, policy, events, ...).
// Each handler returns what to answer, a value or an *httpapi.Error, for
// httpapi's router; daemon/routes.go is the route table that wires them.
// Handlers reach the server only through the narrow interfaces of Deps.
package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/alertmanager"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/controller"
	"github.com/herd-project/herd/metrics"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/placement"
)

// State is the replicated state as the handlers read it (cluster.FSM).
type State interface {
	controller.State
	// ReadWithUsage runs fn under the read lock with the VMs' usage the
	// FSM keeps; fn must keep neither.
	ReadWithUsage(fn func(st *cluster.State, u *cluster.Usage))
	// Operation is a copy of one operation, nil when there is none.
	Operation(id string) *cluster.Operation
}

// Ledger is what placements plan with (the operations controller).
type Ledger interface {
	// Planning is the ledger as it will be (steps in flight and the room
	// running evacuations still need) and the automatic moves' placement
	// options; both are copies.
	Planning(st *cluster.State) (*placement.Ledger, placement.Options)
	// Reservations is a copy of the steps in flight's reservations.
	Reservations() *placement.Ledger
}

// Maintenance enters and leaves maintenance: the entry points the rollout
// controller and the alert webhook use as well. Errors are *httpapi.Error
// (nothing changed) or a raft write's.
type Maintenance interface {
	// Enter starts host's evacuation as req asks; id names the operation
	// ("": a new one), why says what asked for it.
	Enter(ctx context.Context, host string, req api.MaintenanceRequest, who, id, why string) (string, error)
	// Exit starts host's exit from maintenance as req asks.
	Exit(ctx context.Context, host string, req api.MaintenanceRequest, who, id string) (string, error)
	// Precheck says what entering maintenance as req asks would do now.
	Precheck(host string, req api.MaintenanceRequest) (api.Precheck, error)
	// ExitPrecheck lists what left host for its maintenance.
	ExitPrecheck(host string) (api.ExitPrecheck, error)
}

// Balancer plans and starts balancing (the balance controller).
type Balancer interface {
	Plan(ctx context.Context) *api.BalancePlan
	Start(ctx context.Context, plan *api.BalancePlan, who string) (string, error)
}

// Leases is the leader's memory of the agents' leases and heartbeats
// (nothing of it is written to raft).
type Leases interface {
	// Renew records a renewal of host's lease at now.
	Renew(host string, now time.Time)
	// Forget drops host's lease and heartbeats (its agent stopped).
	Forget(host string)
	// Beat records a heartbeat from host's agent at now.
	Beat(host string, now time.Time)
	// AgentStart records when host's agent says it started (zero: it
	// does not say).
	AgentStart(host string, started time.Time)
}

// Webhook takes an Alertmanager delivery (alertmanager.Webhook).
type Webhook interface {
	Handle(ctx context.Context, body []byte, who string) (*alertmanager.Result, *alertmanager.Error)
}

// Dev are herd server -dev's simulated hosts.
type Dev interface {
	// Enabled says whether this server runs in dev mode.
	Enabled() bool
	// Crash makes a simulator host stop answering (true) or answer
	// again (false).
	Crash(host string, crash bool) error
	// Reboot makes a simulator host stop answering now and answer again
	// after down.
	Reboot(host string, down time.Duration) error
}

// Clock is the time rollouts and windows are read against.
type Clock interface{ Now() time.Time }

// Deps are what the handlers work with.
type Deps struct {
	State  State
	Raft   controller.Applier
	Ledger Ledger
	// Policy is the policy in force.
	Policy func() *policy.Document
	// Compiled is the policy's rules compiled against st (cached).
	Compiled func(doc *policy.Document, st *cluster.State) *placement.Compiled
	// Options are the placement options the policy gives for automatic
	// moves on st.
	Options func(doc *policy.Document, st *cluster.State, perTarget int) placement.Options
	// FailoverCapacity is st's failover capacity under doc; u is st's
	// usage, and the caller holds the FSM's read lock.
	FailoverCapacity func(doc *policy.Document, st *cluster.State, u *cluster.Usage) int
	// ApplyPolicy puts doc in force, from the leader or through it.
	ApplyPolicy func(ctx context.Context, doc *policy.Document, source, actor string, ifVersion int) (*api.PolicyInfo, error)
	Maintenance Maintenance
	Balancer    Balancer
	// Busy names the running operation a VM is a step of, or "".
	Busy func(st *cluster.State, vm string) string
	// NewOpID names a new operation.
	NewOpID func() string
	// Freshness sets the headers that say how current a read is.
	Freshness func(h http.Header)
	Dev       Dev
	Clock     Clock
	// Leases is the leader's lease table.
	Leases Leases
	// VerifyLeader confirms this server's leadership with a quorum.
	VerifyLeader func() error
	// Webhook takes Alertmanager's deliveries.
	Webhook Webhook
	Servers Servers
	// NodeName is this server's name.
	NodeName string
	Metrics  *metrics.Metrics
	Log      *slog.Logger
}

// API is the API's handlers.
type API struct{ Deps }

// New builds the handlers.
func New(d Deps) *API { return &API{Deps: d} }
