package cluster

import "sync"

// Usage sums the state's VMs: what each host's take (State.Usage) and how
// many are in each power state.
type Usage struct {
	Hosts   map[string]HostUsage
	ByPower map[PowerState]int
}

// ReadWithUsage calls fn like Read, with the state's Usage. It is computed
// once per applied entry and shared by every reader until the next one: fn
// must not change it. Readers that answer often (GET /v1/hosts, /metrics)
// take it instead of going over every VM each time.
func (f *FSM) ReadWithUsage(fn func(s *State, u *Usage)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.state, f.usage.get(f.state))
}

// usageCache holds State.Usage for one applied index. Entries change the
// index (Apply) or replace the state (Restore, which resets the cache), so
// the index tells when it is stale.
type usageCache struct {
	mu    sync.Mutex
	index uint64
	usage *Usage
}

// get returns s's usage; the caller holds the FSM's lock (read or write).
func (c *usageCache) get(s *State) *Usage {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.usage == nil || c.index != s.Index {
		u := &Usage{ByPower: map[PowerState]int{}}
		u.Hosts = s.usage(u.ByPower)
		c.usage, c.index = u, s.Index
	}
	return c.usage
}

func (c *usageCache) reset() {
	c.mu.Lock()
	c.usage = nil
	c.mu.Unlock()
}
