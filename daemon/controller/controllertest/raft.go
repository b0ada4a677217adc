package controllertest

import (
	"context"

	"github.com/herd-project/herd/cluster"
)

// Raft is a Store that commands change at once, as a one-server raft
// would (controller.Applier): each applied command gets the next index
// and is kept in Cmds; a refused one changes nothing.
type Raft struct {
	Store
	Index uint64
	Cmds  []cluster.Command
}

// NewRaft is a Raft over st.
func NewRaft(st *cluster.State) *Raft { return &Raft{Store: Store{St: st}} }

// Apply applies cmd to the state.
func (r *Raft) Apply(_ context.Context, cmd cluster.Command) (uint64, error) {
	r.Mu.Lock()
	defer r.Mu.Unlock()
	if err := r.St.Apply(cmd, r.Index+1); err != nil {
		return 0, err
	}
	r.Index++
	r.Cmds = append(r.Cmds, cmd)
	return r.Index, nil
}

// Applied is how many commands were applied.
func (r *Raft) Applied() int {
	r.Mu.Lock()
	defer r.Mu.Unlock()
	return len(r.Cmds)
}
