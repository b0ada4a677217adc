package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// RolloutRequest is the body of POST /v1/rollouts/plan and POST
// /v1/rollouts. Exactly one of hosts, group and all says which hosts.
type RolloutRequest struct {
	Hosts []string `json:"hosts,omitempty"`
	// Group is a policy host group, or a driver's group (a vSphere
	// cluster).
	Group string `json:"group,omitempty"`
	All   bool   `json:"all,omitempty"`
	// Parallel hosts out at once (default 1); lowered to what failover
	// capacity allows.
	Parallel int `json:"parallel,omitempty"`
	// Order: fewest-vms (default), group, rack or listed.
	Order string `json:"order,omitempty"`
	// Migrate: all (default) or active-only.
	Migrate string `json:"migrate,omitempty"`
	// Hook names one of the policy's rollout.hooks; empty: each host
	// waits for herd rollout continue or its return after a reboot.
	Hook string `json:"hook,omitempty"`
	// OnFailure: stop (default) or skip.
	OnFailure string `json:"on_failure,omitempty"`
	// MoveBack moves each host's VMs back when it leaves maintenance.
	MoveBack bool `json:"move_back,omitempty"`
	// Window names one of the policy's windows: host steps start only
	// while it is open.
	Window string `json:"window,omitempty"`
	// Force starts a plan that has blockers.
	Force bool `json:"force,omitempty"`
}

// RolloutPlanVM is one VM of a planned host.
type RolloutPlanVM struct {
	VM          string `json:"vm"`
	Name        string `json:"name"`
	Action      string `json:"action"`
	Target      string `json:"target,omitempty"`
	MemoryBytes int64  `json:"memory_bytes"`
}

// RolloutPlanHost is one host of a plan.
type RolloutPlanHost struct {
	Host             string          `json:"host"`
	Wave             int             `json:"wave"`
	VMs              []RolloutPlanVM `json:"vms"`
	Blockers         []string        `json:"blockers"`
	EstimatedSeconds float64         `json:"estimated_seconds"`
}

// LedgerEntry is a host's memory once a wave's VMs are on it.
type LedgerEntry struct {
	Host      string `json:"host"`
	UsedBytes int64  `json:"used_bytes"`
	FreeBytes int64  `json:"free_bytes"`
}

// RolloutWave is a set of hosts out at once.
type RolloutWave struct {
	Number           int           `json:"number"`
	Hosts            []string      `json:"hosts"`
	EstimatedSeconds float64       `json:"estimated_seconds"`
	Ledger           []LedgerEntry `json:"ledger"`
}

// RolloutPlan is the answer of POST /v1/rollouts/plan.
type RolloutPlan struct {
	Parallel         int               `json:"parallel"`
	ParallelNote     string            `json:"parallel_note,omitempty"`
	FailoverCapacity int               `json:"failover_capacity"`
	Waves            []RolloutWave     `json:"waves"`
	Hosts            []RolloutPlanHost `json:"hosts"`
	Blockers         []string          `json:"blockers"`
	MigrationSeconds float64           `json:"migration_seconds"`
	FromHistory      bool              `json:"from_history"`
	EstimatedSeconds float64           `json:"estimated_seconds"`
	OK               bool              `json:"ok"`
}

// RolloutHost is one host's step of a rollout.
type RolloutHost struct {
	Host       string    `json:"host"`
	Wave       int       `json:"wave"`
	Phase      string    `json:"phase"`
	Evacuation string    `json:"evacuation,omitempty"`
	Exit       string    `json:"exit,omitempty"`
	HookRuns   int       `json:"hook_runs,omitempty"`
	DownSeen   bool      `json:"down_seen,omitempty"`
	Continued  bool      `json:"continued,omitempty"`
	Note       string    `json:"note,omitempty"`
	Error      string    `json:"error,omitempty"`
	Started    time.Time `json:"started,omitzero"`
	PhaseSince time.Time `json:"phase_since,omitzero"`
	Finished   time.Time `json:"finished,omitzero"`
}

// Rollout is a rolling maintenance (GET /v1/rollouts/{id}).
type Rollout struct {
	ID        string        `json:"id"`
	State     string        `json:"state"`
	Actor     string        `json:"actor"`
	Created   time.Time     `json:"created"`
	Updated   time.Time     `json:"updated"`
	Parallel  int           `json:"parallel"`
	Order     string        `json:"order"`
	OnFailure string        `json:"on_failure"`
	Migrate   string        `json:"migrate"`
	Hook      string        `json:"hook,omitempty"`
	MoveBack  bool          `json:"move_back,omitempty"`
	Window    string        `json:"window,omitempty"`
	Force     bool          `json:"force,omitempty"`
	Stopping  bool          `json:"stopping,omitempty"`
	Error     string        `json:"error,omitempty"`
	Note      string        `json:"note,omitempty"`
	Hosts     []RolloutHost `json:"hosts"`
	// Counts are the hosts by phase.
	Counts map[string]int `json:"counts"`
}

// Rollouts is the answer of GET /v1/rollouts.
type Rollouts struct {
	Rollouts []Rollout `json:"rollouts"`
}

// ContinueRequest is the body of POST /v1/rollouts/{id}/continue.
type ContinueRequest struct {
	Host string `json:"host"`
}

// RolloutPlan plans a rollout; nothing changes.
func (c *Client) RolloutPlan(ctx context.Context, req RolloutRequest) (*RolloutPlan, error) {
	var out RolloutPlan
	if err := c.Do(ctx, http.MethodPost, "/v1/rollouts/plan", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// StartRollout starts a rollout.
func (c *Client) StartRollout(ctx context.Context, req RolloutRequest) (*Rollout, error) {
	var out Rollout
	if err := c.Do(ctx, http.MethodPost, "/v1/rollouts", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Rollouts lists rollouts, newest first.
func (c *Client) Rollouts(ctx context.Context) ([]Rollout, error) {
	var out Rollouts
	err := c.Get(ctx, "/v1/rollouts", nil, &out)
	return out.Rollouts, err
}

// Rollout returns one rollout.
func (c *Client) Rollout(ctx context.Context, id string) (*Rollout, error) {
	var out Rollout
	if err := c.Get(ctx, "/v1/rollouts/"+url.PathEscape(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RolloutAction pauses, resumes or cancels a rollout.
func (c *Client) RolloutAction(ctx context.Context, id, action string) (*Rollout, error) {
	var out Rollout
	if err := c.Do(ctx, http.MethodPost, "/v1/rollouts/"+url.PathEscape(id)+"/"+url.PathEscape(action), nil, struct{}{}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ContinueRollout ends the wait of host in rollout id.
func (c *Client) ContinueRollout(ctx context.Context, id, host string) (*Rollout, error) {
	var out Rollout
	if err := c.Do(ctx, http.MethodPost, "/v1/rollouts/"+url.PathEscape(id)+"/continue", nil, ContinueRequest{Host: host}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DevReboot makes a dev-mode simulator host go down and come back after
// down (herd host reboot).
func (c *Client) DevReboot(ctx context.Context, host string, down time.Duration) error {
	q := url.Values{}
	if down > 0 {
		q.Set("down", down.String())
	}
	return c.Do(ctx, http.MethodPost, "/v1/dev/hosts/"+url.PathEscape(host)+"/reboot", q, struct{}{}, nil)
}
