package policy

import (
	"time"

	"github.com/herd-project/herd/cluster"
)

// StormCount is how many hosts look down at once, for the fencing-storm
// guard. A network failure does not make every host dead in the same
// instant: health ticks, probe timeouts and a busy leader spread the
// deaths over a moment, and a fast fence (power, dev) can confirm the first
// host before the next one turns dead. So the count keeps a host that was
// fenced recently (it went down within the last two dead_after: one to be
// found dead, one to be fenced), and the guard holds a dead host's fencing
// while the hosts still suspect would tip the share over the threshold.
type StormCount struct {
	Total   int
	Dead    int // dead now, or fenced after going down within the window
	Suspect int // suspect now: may be dead within dead_after
}

// CountStorm counts hosts for the storm guard at now.
func CountStorm(hosts map[string]*cluster.Host, now time.Time, deadAfter time.Duration) StormCount {
	var c StormCount
	window := 2 * deadAfter
	for _, h := range hosts {
		c.Total++
		switch h.Health {
		case cluster.HealthDead:
			c.Dead++
		case cluster.HealthFenced:
			if !h.DownSince.IsZero() && now.Sub(h.DownSince) <= window {
				c.Dead++
			}
		case cluster.HealthSuspect:
			c.Suspect++
		}
	}
	return c
}

// Storm reports whether more than share of the hosts went down at once:
// nothing is fenced automatically.
func (c StormCount) Storm(share float64) bool {
	return c.Total > 0 && float64(c.Dead)/float64(c.Total) > share
}

// Hold reports whether automatic fencing waits this round: the hosts
// still suspect could make it a storm within dead_after. It ends when they
// turn alive again (a single failure: fencing goes on) or dead (a storm).
func (c StormCount) Hold(share float64) bool {
	return c.Total > 0 && float64(c.Dead+c.Suspect)/float64(c.Total) > share
}
