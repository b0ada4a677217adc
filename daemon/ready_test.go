package daemon

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
)

// A leader that has applied what its predecessors committed stays ready
// while it commits: a write in flight (committed, not yet applied) is not
// "catching up", and a load balancer polling /readyz must not drop the
// leader for it.
func TestLeaderStaysReadyWhileItCommits(t *testing.T) {
	dev, c := startDev(t, 2, 2)
	waitInventory(t, c, 2, 2)
	s := dev.Server
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var writes atomic.Int64
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				ev := cluster.Event{Type: "note", Actor: "test", Message: fmt.Sprintf("writer %d, write %d", w, i)}
				if _, err := s.node.Apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{ev}}); err == nil {
					writes.Add(1)
				}
			}
		}(w)
	}
	var polls, notReady atomic.Int64
	var first atomic.Value
	for p := 0; p < 2; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				polls.Add(1)
				if _, _, stale := s.freshness(); stale != "" {
					notReady.Add(1)
					first.CompareAndSwap(nil, stale)
				}
			}
		}()
	}
	// And as a load balancer sees it.
	for ctx.Err() == nil {
		resp, err := http.Get(dev.APIAddr() + "/readyz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		polls.Add(1)
		if resp.StatusCode != http.StatusOK {
			notReady.Add(1)
			first.CompareAndSwap(nil, resp.Status+" from /readyz")
		}
	}
	wg.Wait()
	if writes.Load() < 100 {
		t.Fatalf("only %d writes were committed: the test did not load the leader", writes.Load())
	}
	if n := notReady.Load(); n > 0 {
		t.Fatalf("the leader said it was not ready %d times in %d polls during %d writes; first: %v", n, polls.Load(), writes.Load(), first.Load())
	}
	t.Logf("%d polls, all ready, during %d writes", polls.Load(), writes.Load())
}
