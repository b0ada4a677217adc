package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Agents send the leader a Heartbeat every HeartbeatEvery over the API
// connection they already use for their lease (authenticated the same way,
// and kept open). Health fusion on the leader counts a host's agent path
// lost once it has not heard one for HeartbeatLost: it does not wait for
// gossip to declare the agent dead.
const (
	HeartbeatEvery = 250 * time.Millisecond
	// HeartbeatLost is three heartbeats missed.
	HeartbeatLost = 3 * HeartbeatEvery
	// HeartbeatTimeout bounds one attempt: a server that does not answer
	// in time leaves the beat to the next server, or to the next beat.
	HeartbeatTimeout = 500 * time.Millisecond
)

// Heartbeat is what an agent sends the leader every few hundred
// milliseconds: its host's direct liveness path, beside gossip.
type Heartbeat struct {
	// Agent is the agent's gossip name.
	Agent string `json:"agent"`
	// Started is when this agent process started: a new value means the
	// agent restarted (the host rebooted, or its agent was restarted).
	Started time.Time `json:"started,omitzero"`
}

// HeartbeatAnswer names the leader that recorded the heartbeat, so that
// the agent sends the next one there.
type HeartbeatAnswer struct {
	Leader string `json:"leader"`
}

// Heartbeat sends POST /v1/hosts/{host}/heartbeat.
func (c *Client) Heartbeat(ctx context.Context, host string, req Heartbeat) (*HeartbeatAnswer, error) {
	var out HeartbeatAnswer
	if err := c.Do(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(host)+"/heartbeat", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
