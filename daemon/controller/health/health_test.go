package health

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/gossip"
	"github.com/herd-project/herd/daemon/controller/controllertest"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/metrics"
	"github.com/herd-project/herd/policy"
)

// fakeRaft is the state and raft of one host: SetHostHealth changes it,
// and every command is kept.
type fakeRaft struct {
	controllertest.Store
	cmds []cluster.Command
}

func (f *fakeRaft) Apply(_ context.Context, cmd cluster.Command) (uint64, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.cmds = append(f.cmds, cmd)
	if c, ok := cmd.(*cluster.SetHostHealth); ok {
		h := *f.St.Hosts[c.Host]
		h.Health = c.Health
		f.St.Hosts[c.Host] = &h
	}
	return uint64(len(f.cmds)), nil
}

// healths are the host healths written, in order.
func (f *fakeRaft) healths() []cluster.Health {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	var out []cluster.Health
	for _, c := range f.cmds {
		if c, ok := c.(*cluster.SetHostHealth); ok {
			out = append(out, c.Health)
		}
	}
	return out
}

// probeOnly is a driver whose host stops answering probes; the health
// controller calls nothing else.
type probeOnly struct{ drivers.Driver }

func (probeOnly) ProbeHost(context.Context, string) (drivers.Connection, error) {
	return drivers.NotResponding, nil
}

type oneDriver struct{}

func (oneDriver) Get(context.Context, string) (drivers.Driver, error) { return probeOnly{}, nil }

type noLeases struct{}

func (noLeases) Deadline(string, time.Duration, time.Duration) time.Time { return time.Time{} }
func (noLeases) Heard(string, time.Time) (bool, bool)                    { return false, false }

// TestHostThatStopsAnsweringGoesSuspectThenDead runs the controller
// against a fake raft: a host whose driver probe stops answering is
// written suspect, then dead, after the policy's thresholds, and nothing
// else.
func TestHostThatStopsAnsweringGoesSuspectThenDead(t *testing.T) {
	st := cluster.NewState()
	st.Hosts["h1"] = &cluster.Host{Name: "h1", Driver: "d", Health: cluster.HealthAlive, Connection: cluster.Connected}
	raft := &fakeRaft{Store: controllertest.Store{St: st}}
	doc := policy.Default()
	doc.Health.SuspectAfter, doc.Health.DeadAfter = 200*time.Millisecond, 600*time.Millisecond
	c := New(Deps{State: raft, Raft: raft, Drivers: oneDriver{}, Leases: noLeases{},
		Policy: func() *policy.Document { return doc }, Gossip: func() []gossip.Member { return nil },
		Evacuate: func(context.Context, string, string) error { t.Error("evacuated"); return nil },
		Metrics:  metrics.New(prometheus.NewRegistry(), metrics.Sources{}), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testutil.WaitFor(t, 10*time.Second, "h1 dead", func() bool {
		h := raft.healths()
		return len(h) > 0 && h[len(h)-1] == cluster.HealthDead
	})
	if got := raft.healths(); len(got) != 2 || got[0] != cluster.HealthSuspect || got[1] != cluster.HealthDead {
		t.Fatalf("healths written: %v, want [suspect dead]", got)
	}
}
