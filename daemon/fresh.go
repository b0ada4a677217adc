package daemon

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/herd-project/herd/daemon/api"
)

// Every read says how fresh it is, as Consul's X-Consul-KnownLeader,
// X-Consul-LastContact and X-Consul-Index do; a read from a server with no
// leader, out of touch or still catching up carries X-Herd-Stale with the
// reason (the CLI prints it as a warning). ?stale=false asks the leader.
const (
	headerKnownLeader = "X-Herd-Known-Leader"
	headerLastContact = "X-Herd-Last-Contact" // milliseconds
	headerIndex       = "X-Herd-Index"
	headerStale       = api.StaleHeader
	// staleAfter: a follower that has not heard from the leader for longer
	// serves stale reads.
	staleAfter = 3 * time.Second
	// maxApplyLag: a server with more committed entries than this still to
	// apply serves stale reads.
	maxApplyLag = 1000
)

// catchUp remembers whether this server has applied what the leader had
// committed when this server last asked, since it started or last lost
// touch: a restarted follower replays its log before it says it is ready.
type catchUp struct {
	mu       sync.Mutex
	done     bool
	target   uint64
	targetAt time.Time
	// lastTry and lastErr: a failed question to the leader is asked again
	// at most twice a second; reads meanwhile say why they are stale.
	lastTry time.Time
	lastErr string
}

// freshness says whether this server's state is current: a leader is known,
// it heard from it recently and it has caught up. stale is "" when so.
func (s *Server) freshness() (knownLeader bool, lastContact time.Duration, stale string) {
	leader, _ := s.node.Leader()
	if leader == "" {
		s.catchUp.reset()
		return false, 0, "no raft leader: this server's state may be out of date (a majority of the servers must be up to elect one)"
	}
	r := s.node.Raft()
	if s.node.IsLeader() {
		// A new leader is current once it has applied everything its
		// predecessors committed (the barrier its controllers wait for).
		// After that, an entry committed and not yet applied is this
		// leader's own write in flight, not a state out of date: /readyz
		// must not drop the leader for every write.
		a, c := r.AppliedIndex(), r.CommitIndex()
		if !s.leaderCurrent.Load() {
			return true, 0, fmt.Sprintf("catching up: a new leader applies what was committed before it (applied %d of %d)", a, c)
		}
		if c > a+maxApplyLag {
			return true, 0, fmt.Sprintf("applying: %d committed entries not applied yet", c-a)
		}
		return true, 0, ""
	}
	lc := r.LastContact()
	if lc.IsZero() {
		s.catchUp.reset()
		return true, 0, "not in touch with the leader yet"
	}
	lastContact = time.Since(lc)
	if lastContact > staleAfter {
		s.catchUp.reset()
		return true, lastContact, fmt.Sprintf("last heard from leader %s %s ago", leader, lastContact.Round(time.Millisecond))
	}
	if msg := s.caughtUp(); msg != "" {
		return true, lastContact, msg
	}
	if a, c := r.AppliedIndex(), r.CommitIndex(); c > a+maxApplyLag {
		return true, lastContact, fmt.Sprintf("applying: %d committed entries not applied yet", c-a)
	}
	return true, lastContact, ""
}

func (c *catchUp) reset() {
	c.mu.Lock()
	c.done, c.target, c.targetAt, c.lastTry, c.lastErr = false, 0, time.Time{}, time.Time{}, ""
	c.mu.Unlock()
}

// caughtUp returns "" once this server has applied the leader's commit
// index as the leader reported it when first asked.
func (s *Server) caughtUp() string {
	c := &s.catchUp
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return ""
	}
	applied := s.node.Raft().AppliedIndex()
	if c.targetAt.IsZero() {
		if time.Since(c.lastTry) < 500*time.Millisecond {
			return c.lastErr
		}
		c.lastTry = time.Now()
		target, err := s.leaderCommitIndex()
		if err != nil {
			c.lastErr = "cannot ask the leader how far the log goes: " + err.Error()
			return c.lastErr
		}
		c.target, c.targetAt = target, time.Now()
	}
	if applied < c.target {
		return fmt.Sprintf("catching up: applied %d of the leader's %d", applied, c.target)
	}
	c.done = true
	return ""
}

// leaderCommitIndex asks the leader for its commit index.
func (s *Server) leaderCommitIndex() (uint64, error) {
	addr := s.leaderAPI()
	if addr == "" {
		return 0, fmt.Errorf("the leader's API address is not known yet")
	}
	c, err := s.apiClient(addr, time.Second)
	if err != nil {
		return 0, err
	}
	var out api.ServerStats
	if err := c.Get(s.ctx, "/v1/cluster/self", nil, &out); err != nil {
		return 0, err
	}
	return out.Raft.CommitIndex, nil
}

// setFreshness sets the headers that say how current a read is.
func (s *Server) setFreshness(hd http.Header) {
	known, lc, stale := s.freshness()
	hd.Set(headerKnownLeader, strconv.FormatBool(known))
	hd.Set(headerLastContact, strconv.FormatInt(lc.Milliseconds(), 10))
	hd.Set(headerIndex, strconv.FormatUint(s.node.Raft().AppliedIndex(), 10))
	if stale != "" {
		hd.Set(headerStale, stale)
	}
}
