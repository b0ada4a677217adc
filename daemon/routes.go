package daemon

import (
	"net/http"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/daemon/handlers"
	"github.com/herd-project/herd/daemon/httpapi"
)

// routes is the API. Local: answered by any server from its own state
// (marked with how current it is). OnLeader: answered by the leader (a
// follower forwards it). Self: answered by this server as it is.
func (s *Server) routes() http.Handler {
	rt := httpapi.NewRouter(httpapi.Options{Cluster: routerCluster{s}, Name: s.cfg.NodeName, Transport: s.clientTransport(),
		Tokens: s.tokens, Limiter: s.limiter, Metrics: s.metrics})
	local := func(pattern string, h httpapi.HandlerFunc) { rt.Local(pattern, config.RoleRead, h) }
	h := s.handlers()

	rt.Lease("PUT /v1/hosts/{host}/lease", h.LeaseRenew)
	rt.Lease("DELETE /v1/hosts/{host}/lease", h.LeaseRelease)
	rt.Lease("POST /v1/hosts/{host}/heartbeat", h.Heartbeat)
	// Served everywhere, so that a server not in dev mode says why not.
	rt.OnLeader("POST /v1/dev/hosts/{host}/crash", config.RoleOperate, h.DevHost(true))
	rt.OnLeader("POST /v1/dev/hosts/{host}/restore", config.RoleOperate, h.DevHost(false))
	local("GET /v1/hosts", h.Hosts)
	local("GET /v1/hosts/{host}", h.Host)
	rt.OnLeader("PUT /v1/hosts/{host}/status", config.RoleOperate, h.HostStatus)
	rt.OnLeader("PUT /v1/hosts/{host}/maintenance", config.RoleOperate, h.SetMaintenance)
	// A precheck changes nothing: readers may ask.
	rt.OnLeader("POST /v1/hosts/{host}/maintenance/precheck", config.RoleRead, h.Precheck)
	local("GET /v1/hosts/{host}/maintenance/exit-precheck", h.ExitPrecheck)
	rt.OnLeader("POST /v1/vms/{vm}/migrate", config.RoleOperate, h.MigrateVM)
	local("GET /v1/operations", h.Operations)
	local("GET /v1/operations/{id}", h.Operation)
	rt.OnLeader("POST /v1/operations/{id}/cancel", config.RoleOperate, h.CancelOperation)
	rt.OnLeader("POST /v1/operations/{id}/retry", config.RoleOperate, h.RetryOperation)
	// A rollout plan changes nothing: readers may ask (on the leader,
	// which holds the ledger of moves in flight).
	rt.OnLeader("POST /v1/rollouts/plan", config.RoleRead, h.RolloutPlan)
	rt.OnLeader("POST /v1/rollouts", config.RoleOperate, h.RolloutStart)
	local("GET /v1/rollouts", h.Rollouts)
	local("GET /v1/rollouts/{id}", h.Rollout)
	for _, action := range []string{cluster.RolloutPause, cluster.RolloutResume, cluster.RolloutCancel} {
		rt.OnLeader("POST /v1/rollouts/{id}/"+action, config.RoleOperate, h.RolloutControl(action))
	}
	rt.OnLeader("POST /v1/rollouts/{id}/continue", config.RoleOperate, h.RolloutContinue)
	rt.OnLeader("POST /v1/dev/hosts/{host}/reboot", config.RoleOperate, h.DevReboot)
	local("GET /v1/vms", h.VMs)
	local("GET /v1/events", h.Events)
	rt.OnLeader("POST /v1/events", config.RoleOperate, h.AppendEvent)
	rt.OnLeader("POST /v1/alerts/webhook", config.RoleOperate, h.AlertWebhook)
	rt.OnLeader("GET /v1/balance/plan", config.RoleRead, h.BalancePlan)
	rt.OnLeader("POST /v1/balance/apply", config.RoleOperate, h.BalanceApply)
	rt.OnLeader("POST /v1/simulate/failure", config.RoleRead, h.SimulateFailure)
	local("GET /v1/policy", h.GetPolicy)
	rt.OnLeader("PUT /v1/policy", config.RoleAdmin, h.PutPolicy)
	local("POST /v1/policy/validate", h.ValidatePolicy)
	local("GET /v1/cluster", h.Cluster)
	// Read by the leader's autopilot and by followers checking readiness:
	// no freshness check of its own.
	rt.Self("GET /v1/cluster/self", config.RoleRead, httpapi.Wrap(h.ServerStats))
	rt.OnLeader("POST /v1/cluster/join", config.RoleAdmin, h.Join)
	rt.OnLeader("POST /v1/cluster/remove", config.RoleAdmin, h.RemoveServer)
	// Leaving runs on the server that leaves; it asks the leader.
	rt.Self("POST /v1/cluster/leave", config.RoleAdmin, httpapi.Wrap(h.Leave))
	rt.Self("GET /healthz", config.RoleNone, httpapi.Wrap(h.Healthz))
	rt.Self("GET /readyz", config.RoleNone, httpapi.Wrap(h.Readyz))
	rt.Metrics(s.metrics.Handler(s.reg), s.cfg.API.MetricsOpen)
	return rt.Handler()
}

// routerCluster is the server as the router sees it.
type routerCluster struct{ s *Server }

func (c routerCluster) IsLeader() bool             { return c.s.node.IsLeader() }
func (c routerCluster) LeaderAPI() string          { return c.s.leaderAPI() }
func (c routerCluster) VerifyLeader() error        { return c.s.node.Raft().VerifyLeader().Error() }
func (c routerCluster) SetFreshness(h http.Header) { c.s.setFreshness(h) }

// handlers builds the API's handlers on this server.
func (s *Server) handlers() *handlers.API {
	return handlers.New(handlers.Deps{
		State:            s.node.FSM(),
		Raft:             s.node,
		Ledger:           s.ops,
		Policy:           s.Policy,
		Compiled:         s.policy.Compiled,
		Options:          s.policy.Options,
		FailoverCapacity: s.failoverCapacity,
		ApplyPolicy:      s.policy.Apply,
		Maintenance:      s.maint,
		Balancer:         s.balancer,
		Busy:             vmBusy,
		NewOpID:          newOpID,
		Freshness:        s.setFreshness,
		Dev:              devHosts{s},
		Clock:            &s.clock,
		Leases:           s.leases,
		VerifyLeader:     func() error { return s.node.Raft().VerifyLeader().Error() },
		Webhook:          s.webhook,
		Servers: handlers.Servers{Raft: s.node, Members: s.members, Gossip: s.gossip.Members, Self: s.forming.Info, LeaderAPI: s.leaderAPI,
			Discovered: s.forming.Discovered, PolicyStatus: s.policy.Status, LeaderClient: s.leaderClient,
			Leave: func() { s.leftOnce.Do(func() { close(s.left) }) }, Stabilization: s.cfg.Raft.ServerStabilization},
		NodeName: s.cfg.NodeName,
		Metrics:  s.metrics,
		Log:      s.log,
	})
}
