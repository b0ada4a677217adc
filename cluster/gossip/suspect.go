package gossip

import (
	"strconv"
	"sync"
	"sync/atomic"

	metrics "github.com/hashicorp/go-metrics"
)

// memberlist keeps a member's suspect state to itself: the nodes its
// Members() returns always carry StateAlive (hashicorp/memberlist#266), and
// no delegate hears a suspicion. What it does emit is a go-metrics counter,
// memberlist.msg.suspect, each time a member turns suspect in this node's
// view, labelled with Config.MetricLabels. suspicionSink is a go-metrics
// sink that routes that counter, by a label naming the Gossip that emitted
// it, to the Gossip's OnSuspect; every other metric is dropped.

const suspectLabel = "herd_gossip"

var (
	sinkOnce sync.Once
	sinkErr  error
	sink     = &suspicionSink{hooks: map[string]func(){}}
	sinkSeq  atomic.Uint64
)

type suspicionSink struct {
	metrics.BlackholeSink
	mu    sync.Mutex
	hooks map[string]func()
}

// register installs the sink as go-metrics' global one (once per process)
// and returns the label value memberlist must carry for fn to hear its
// suspicions, and a function that stops it.
func (s *suspicionSink) register(fn func()) (metrics.Label, func(), error) {
	sinkOnce.Do(func() {
		conf := metrics.DefaultConfig("")
		conf.EnableHostname, conf.EnableRuntimeMetrics = false, false
		_, sinkErr = metrics.NewGlobal(conf, s)
	})
	if sinkErr != nil {
		return metrics.Label{}, nil, sinkErr
	}
	id := "g" + strconv.FormatUint(sinkSeq.Add(1), 10)
	s.mu.Lock()
	s.hooks[id] = fn
	s.mu.Unlock()
	return metrics.Label{Name: suspectLabel, Value: id}, func() {
		s.mu.Lock()
		delete(s.hooks, id)
		s.mu.Unlock()
	}, nil
}

func (s *suspicionSink) IncrCounterWithLabels(key []string, _ float32, labels []metrics.Label) {
	if len(key) != 3 || key[0] != "memberlist" || key[1] != "msg" || key[2] != "suspect" {
		return
	}
	for _, l := range labels {
		if l.Name != suspectLabel {
			continue
		}
		s.mu.Lock()
		fn := s.hooks[l.Value]
		s.mu.Unlock()
		if fn != nil {
			fn()
		}
	}
}
