package ops

import (
	"log/slog"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/controller"
	"github.com/herd-project/herd/metrics"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/placement"
)

// State is the replicated state as the controller reads it (cluster.FSM).
type State interface {
	controller.State
	// Watch registers ch to get the index of every entry applied.
	Watch(ch chan<- uint64)
}

// Clock is the wall time steps are recorded at.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Deps are what the operations controller works with.
type Deps struct {
	State State
	// Raft writes the steps. When it can also hand a command to raft
	// without waiting for its commit (raftnode.Node's Submit), the
	// recreations of a recovery start side by side (submit.go).
	Raft    controller.Applier
	Drivers controller.Drivers
	// Policy is the policy in force.
	Policy func() *policy.Document
	// Options are the placement options of automatic moves under doc, with
	// perTarget the limit of moves in flight to one host.
	Options func(doc *policy.Document, st *cluster.State, perTarget int) placement.Options
	// Self is this server's name (in the event of a resumed operation).
	Self string
	// InventoryTimeout bounds an inventory read (inventory.timeout).
	InventoryTimeout time.Duration
	// Clock may be nil: the system clock.
	Clock   Clock
	Metrics *metrics.Metrics
	Log     *slog.Logger
}

// now is the time a step is recorded at.
func (c *Controller) now() time.Time { return c.d.Clock.Now().UTC() }
