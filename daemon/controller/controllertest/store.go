// Package controllertest holds what the controllers' tests share. Only
// tests import it.
package controllertest

import (
	"sync"

	"github.com/herd-project/herd/cluster"
)

// Store is a replicated state under a lock, read as cluster.FSM is read
// (controller.State). A test's fake raft embeds it and changes St under
// Mu.
type Store struct {
	Mu sync.Mutex
	St *cluster.State
}

// Read runs fn under the lock.
func (s *Store) Read(fn func(st *cluster.State)) {
	s.Mu.Lock()
	defer s.Mu.Unlock()
	fn(s.St)
}

// State is a copy of the state.
func (s *Store) State() *cluster.State {
	s.Mu.Lock()
	defer s.Mu.Unlock()
	return s.St.Snapshot()
}
