package clustertest

import (
	"time"

	"github.com/hashicorp/raft"
)

// SlowLogStore is a raft log store whose writes take Delay longer, as on a
// slow disk: every entry the leader appends waits for it before it can
// commit. Reads are not slowed.
type SlowLogStore struct {
	raft.LogStore
	Delay time.Duration
}

// SlowLogs returns a wrapper for raftnode.Config.WrapLogStore (or the
// server's Options.RaftLogStore) that slows every log write by delay.
func SlowLogs(delay time.Duration) func(raft.LogStore) raft.LogStore {
	return func(s raft.LogStore) raft.LogStore { return &SlowLogStore{LogStore: s, Delay: delay} }
}

func (s *SlowLogStore) StoreLog(l *raft.Log) error {
	time.Sleep(s.Delay)
	return s.LogStore.StoreLog(l)
}

func (s *SlowLogStore) StoreLogs(logs []*raft.Log) error {
	time.Sleep(s.Delay)
	return s.LogStore.StoreLogs(logs)
}
