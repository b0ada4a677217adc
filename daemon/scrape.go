package daemon

import (
	"sync"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/metrics"
	"github.com/herd-project/herd/policy"
)

// failoverCache holds the failover capacity computed at one state index:
// the computation takes tens of milliseconds at 2,000 hosts, and a busy
// cluster changes its state between most scrapes. A scrape after a change
// answers with the capacity computed last and starts the computation for
// the new state (one at a time), so the gauge trails the state by one
// computation and a scrape never waits for it; the first scrape, and the
// first under a new policy, compute it before they answer.
type failoverCache struct {
	mu        sync.Mutex
	index     uint64
	doc       *policy.Document
	capacity  int
	computing bool
}

// failoverCapacity returns the failover capacity for doc as the cache has
// it, refreshing it as failoverCache says.
func (s *Server) failoverCapacity(doc *policy.Document, index uint64) int {
	c := &s.failover
	c.mu.Lock()
	defer c.mu.Unlock()
	compute := func() (int, uint64) {
		st := s.node.FSM().State()
		return policy.FailoverCapacity(st, s.placementOptions(doc, st, 0)), st.Index
	}
	switch {
	case c.doc != doc:
		c.capacity, c.index = compute()
		c.doc = doc
	case c.index != index && !c.computing:
		c.computing = true
		go func() {
			k, at := compute()
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.doc == doc && at > c.index {
				c.capacity, c.index = k, at
			}
			c.computing = false
		}()
	}
	return c.capacity
}

// stateSample reads the state once, under the FSM's read lock (no copy of
// the 40,000-VM maps), for the state collector.
func (s *Server) stateSample() metrics.StateSample {
	out := metrics.StateSample{VMsByPower: map[string]int{}, EvacuationRemaining: map[string]int{}, Operations: map[[2]string]int{}, RecoveryVMs: map[string]int{}}
	var index uint64
	s.node.FSM().ReadWithUsage(func(st *cluster.State, u *cluster.Usage) {
		index = st.Index
		usage := u.Hosts
		out.Events = len(st.Events)
		stale := map[string]int{}
		for _, c := range st.StaleCopies {
			stale[c.Host]++
		}
		for _, name := range st.HostNames() {
			h, u := st.Hosts[name], usage[name]
			out.Hosts = append(out.Hosts, metrics.HostSample{
				Name: h.Name, Driver: h.Driver, Admin: string(h.Admin), Maintenance: string(h.Maintenance), Health: string(h.Health),
				Connected: h.Connection == cluster.Connected, MemoryBytes: h.MemoryBytes, MemoryUsedBytes: u.MemoryUsedBytes,
				CPUs: h.CPUs, VCPUsUsed: u.VCPUsUsed, VMs: u.VMs, RunningVMs: u.RunningVMs, StaleCopies: stale[name],
				FencingFailed: h.Health == cluster.HealthDead && h.FenceFailure != "", LeaseArmed: h.LeaseTTL > 0,
			})
		}
		for p, n := range u.ByPower {
			out.VMsByPower[string(p)] = n
		}
		for _, op := range st.Operations {
			out.Operations[[2]string{string(op.Kind), string(op.State)}]++
			if op.Kind == cluster.OpEvacuate && op.State == cluster.OpRunning {
				n := 0
				for _, it := range op.Items {
					if !it.State.Terminal() {
						n++
					}
				}
				out.EvacuationRemaining[op.Host] = n
			}
			if op.Kind == cluster.OpRecover && op.State == cluster.OpRunning {
				for _, it := range op.Items {
					switch {
					case it.State == cluster.ItemRunning:
						out.RecoveryVMs["running"]++
					case it.State == cluster.ItemPending && it.Error != "":
						out.RecoveryVMs["blocked"]++
					case it.State == cluster.ItemPending:
						out.RecoveryVMs["pending"]++
					}
				}
			}
		}
	})
	doc := s.Policy()
	out.FailoverMin = doc.Failover.MinHostFailures
	out.FailoverCapacity = s.failoverCapacity(doc, index)
	return out
}
