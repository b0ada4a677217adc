package daemon

import (
	"net/http"

	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/daemon/httpapi"
)

// routes is the API. Local: answered by any server from its own state
// (marked with how current it is). OnLeader: answered by the leader (a
// follower forwards it). Self: answered by this server as it is.
func (s *Server) routes() http.Handler {
	rt := httpapi.NewRouter(httpapi.Options{Cluster: routerCluster{s}, Name: s.cfg.NodeName, Transport: s.clientTransport(),
		Tokens: s.tokens, Limiter: s.limiter, Metrics: s.metrics})
	local := func(pattern string, h httpapi.HandlerFunc) { rt.Local(pattern, config.RoleRead, h) }

	rt.Lease("PUT /v1/hosts/{host}/lease", s.handleLeaseRenew)
	rt.Lease("DELETE /v1/hosts/{host}/lease", s.handleLeaseRelease)
	rt.Lease("POST /v1/hosts/{host}/heartbeat", s.handleHeartbeat)
	// Served everywhere, so that a server not in dev mode says why not.
	rt.OnLeader("POST /v1/dev/hosts/{host}/crash", config.RoleOperate, s.handleDevCrash(true))
	rt.OnLeader("POST /v1/dev/hosts/{host}/restore", config.RoleOperate, s.handleDevCrash(false))
	local("GET /v1/hosts", s.handleHosts)
	local("GET /v1/hosts/{host}", s.handleHost)
	rt.OnLeader("PUT /v1/hosts/{host}/status", config.RoleOperate, s.handleHostStatus)
	rt.OnLeader("PUT /v1/hosts/{host}/maintenance", config.RoleOperate, s.handleMaintenance)
	// A precheck changes nothing: readers may ask.
	rt.OnLeader("POST /v1/hosts/{host}/maintenance/precheck", config.RoleRead, s.handlePrecheck)
	local("GET /v1/hosts/{host}/maintenance/exit-precheck", s.handleExitPrecheck)
	rt.OnLeader("POST /v1/vms/{vm}/migrate", config.RoleOperate, s.handleMigrateVM)
	local("GET /v1/operations", s.handleOperations)
	local("GET /v1/operations/{id}", s.handleOperation)
	rt.OnLeader("POST /v1/operations/{id}/cancel", config.RoleOperate, s.handleCancelOperation)
	rt.OnLeader("POST /v1/operations/{id}/retry", config.RoleOperate, s.handleRetryOperation)
	s.addRolloutRoutes(rt)
	local("GET /v1/vms", s.handleVMs)
	local("GET /v1/events", s.handleEvents)
	rt.OnLeader("POST /v1/events", config.RoleOperate, s.handleAppendEvent)
	rt.OnLeader("POST /v1/alerts/webhook", config.RoleOperate, s.handleAlertWebhook)
	rt.OnLeader("GET /v1/balance/plan", config.RoleRead, s.handleBalancePlan)
	rt.OnLeader("POST /v1/balance/apply", config.RoleOperate, s.handleBalanceApply)
	rt.OnLeader("POST /v1/simulate/failure", config.RoleRead, s.handleSimulateFailure)
	local("GET /v1/policy", s.handleGetPolicy)
	rt.OnLeader("PUT /v1/policy", config.RoleAdmin, s.handlePutPolicy)
	local("POST /v1/policy/validate", s.handleValidatePolicy)
	local("GET /v1/cluster", s.handleCluster)
	// Read by the leader's autopilot and by followers checking readiness:
	// no freshness check of its own.
	rt.Self("GET /v1/cluster/self", config.RoleRead, httpapi.Wrap(s.handleServerStats))
	rt.OnLeader("POST /v1/cluster/join", config.RoleAdmin, s.handleJoin)
	rt.OnLeader("POST /v1/cluster/remove", config.RoleAdmin, s.handleRemoveServer)
	// Leaving runs on the server that leaves; it asks the leader.
	rt.Self("POST /v1/cluster/leave", config.RoleAdmin, httpapi.Wrap(s.handleLeave))
	rt.Self("GET /healthz", config.RoleNone, httpapi.Wrap(s.handleHealthz))
	rt.Self("GET /readyz", config.RoleNone, httpapi.Wrap(s.handleReadyz))
	rt.Metrics(s.metrics.Handler(s.reg), s.cfg.API.MetricsOpen)
	return rt.Handler()
}

// routerCluster is the server as the router sees it.
type routerCluster struct{ s *Server }

func (c routerCluster) IsLeader() bool             { return c.s.node.IsLeader() }
func (c routerCluster) LeaderAPI() string          { return c.s.leaderAPI() }
func (c routerCluster) VerifyLeader() error        { return c.s.node.Raft().VerifyLeader().Error() }
func (c routerCluster) SetFreshness(h http.Header) { c.s.setFreshness(h) }
