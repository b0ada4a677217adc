package api

import (
	"context"
	"net/http"
	"time"
)

// SimulateFailureRequest is the body of POST /v1/simulate/failure.
type SimulateFailureRequest struct {
	Hosts []string `json:"hosts"`
}

// FailureSimulation is the answer of POST /v1/simulate/failure: the
// recovery Herd would run if the hosts failed now, from the live state, by
// the planner recovery itself uses. Nothing changes.
type FailureSimulation struct {
	Hosts []SimulatedHost `json:"hosts"`
	// Steps are every VM of the failed hosts: those that start in the
	// order they start (Order from 1), and the blocked ones with why.
	Steps      []RecoveryStep `json:"steps"`
	Recreated  int            `json:"recreated"`
	Registered int            `json:"registered"`
	Blocked    int            `json:"blocked"`
	// FailoverBefore and FailoverAfter are the failover capacity in hosts
	// now and after the recovery; FailoverMin the policy's minimum.
	FailoverBefore int `json:"failover_before"`
	FailoverAfter  int `json:"failover_after"`
	FailoverMin    int `json:"failover_min"`
	// Notes say what else would happen or not (no automatic fencing in a
	// storm, recovery.automatic off).
	Notes []string  `json:"notes,omitempty"`
	Time  time.Time `json:"time"`
}

// SimulatedHost is one host named in a failure simulation.
type SimulatedHost struct {
	Name   string `json:"name"`
	Health string `json:"health"`
	VMs    int    `json:"vms"`
	// Simulated is false for a host whose recovery already runs: its plan
	// is that operation's.
	Simulated bool   `json:"simulated"`
	Note      string `json:"note,omitempty"`
}

// RecoveryStep is one VM of a failed host in a failure simulation.
type RecoveryStep struct {
	Order       int    `json:"order,omitempty"`
	VM          string `json:"vm"`
	Name        string `json:"name"`
	From        string `json:"from"`
	Action      string `json:"action"`
	Priority    int    `json:"priority"`
	MemoryBytes int64  `json:"memory_bytes"`
	WasRunning  bool   `json:"was_running"`
	Target      string `json:"target,omitempty"`
	Blocked     string `json:"blocked,omitempty"`
	Why         string `json:"why,omitempty"`
}

// SimulateFailure asks what recovery would do if hosts failed now.
func (c *Client) SimulateFailure(ctx context.Context, hosts []string) (*FailureSimulation, error) {
	var out FailureSimulation
	if err := c.Do(ctx, http.MethodPost, "/v1/simulate/failure", nil, SimulateFailureRequest{Hosts: hosts}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
