package daemon

import (
	"sync"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/metrics"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/failover"
	"github.com/herd-project/herd/policy/placement"
)

// failoverCache holds the failover capacity computed last and what it was
// computed from: the hosts as the capacity sees them, the FSM's usage and
// how many times its running VMs changed, the memory reserve. The capacity
// is computed from the usage the FSM keeps (no pass over every VM), and
// again whenever any of those changed: a scrape shows the capacity of the
// state it reads, never an older one, and most entries (events, operation
// steps, notes) leave it as it was.
type failoverCache struct {
	mu       sync.Mutex
	hosts    map[string]failover.Host
	usage    *cluster.Usage
	changes  uint64
	reserve  float64
	capacity int
}

// failoverCapacity returns the failover capacity of st under doc; u is st's
// usage. The caller holds the FSM's read lock.
func (s *Server) failoverCapacity(doc *policy.Document, st *cluster.State, u *cluster.Usage) int {
	return s.failover.get(doc.Placement.MemoryReserve, st, u)
}

// get returns the failover capacity of st with the memory reserve given;
// u is st's usage. The caller holds the FSM's read lock.
func (c *failoverCache) get(reserve float64, st *cluster.State, u *cluster.Usage) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	same := c.usage == u && c.changes == u.RunningChanges && c.reserve == reserve && len(c.hosts) == len(st.Hosts)
	for name, h := range st.Hosts {
		if !same {
			break
		}
		k, ok := c.hosts[name]
		same = ok && k == failover.HostOf(h)
	}
	if !same {
		// Only the memory reserve of the placement options counts here:
		// no need to compile the policy against 40,000 VMs.
		c.capacity = failover.CapacityOfUsage(st, u, placement.Options{MemoryReserve: reserve})
		c.usage, c.changes, c.reserve = u, u.RunningChanges, reserve
		c.hosts = make(map[string]failover.Host, len(st.Hosts))
		for name, h := range st.Hosts {
			c.hosts[name] = failover.HostOf(h)
		}
	}
	return c.capacity
}

// stateSample reads the state once, under the FSM's read lock (no copy of
// the 40,000-VM maps), for the state collector.
func (s *Server) stateSample() metrics.StateSample {
	out := metrics.StateSample{VMsByPower: map[string]int{}, EvacuationRemaining: map[string]int{}, Operations: map[[2]string]int{}, RecoveryVMs: map[string]int{}}
	doc := s.Policy()
	s.node.FSM().ReadWithUsage(func(st *cluster.State, u *cluster.Usage) {
		out.FailoverCapacity = s.failoverCapacity(doc, st, u)
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
	out.FailoverMin = doc.Failover.MinHostFailures
	return out
}
