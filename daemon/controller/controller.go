// Package controller holds what the leader's controllers share: the
// narrow interfaces through which they reach the replicated state, raft
// and the drivers. Each controller is a package below it, built from a
// Deps struct by the server (daemon.NewServer), and runs while this server
// leads: Run returns when its context ends.
package controller

import (
	"context"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/drivers"
)

// State is the replicated state as a controller reads it (cluster.FSM).
type State interface {
	// Read runs fn under the state's read lock; fn must not keep st.
	Read(fn func(st *cluster.State))
	// State is a copy of the state.
	State() *cluster.State
}

// Applier writes commands to raft (raftnode.Node).
type Applier interface {
	Apply(ctx context.Context, cmd cluster.Command) (uint64, error)
}

// Drivers opens drivers by name (the server's driver set).
type Drivers interface {
	Get(ctx context.Context, name string) (drivers.Driver, error)
}
