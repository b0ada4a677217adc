package daemon

import (
	"sync/atomic"
	"time"
)

// clock is the wall time the controllers plan windows against: time.Now,
// unless a test has set its own.
type clock struct {
	f atomic.Pointer[func() time.Time]
}

// Now is the time now.
func (c *clock) Now() time.Time {
	if f := c.f.Load(); f != nil {
		return (*f)()
	}
	return time.Now()
}

// set makes Now answer f() (tests drive the clock with it).
func (c *clock) set(f func() time.Time) { c.f.Store(&f) }
