package membership

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	autopilot "github.com/hashicorp/raft-autopilot"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/raftnode"
	"github.com/herd-project/herd/internal/testutil"
)

// fakeNode is a raft configuration and a log of what was applied.
type fakeNode struct {
	members []raftnode.Member
	applied []cluster.Command
	removed []string
}

func (f *fakeNode) Apply(_ context.Context, cmd cluster.Command) (uint64, error) {
	f.applied = append(f.applied, cmd)
	return uint64(len(f.applied)), nil
}
func (f *fakeNode) Members() ([]raftnode.Member, error) { return f.members, nil }
func (f *fakeNode) Stats() raftnode.Stats               { return raftnode.Stats{} }
func (f *fakeNode) AddVoter(id, addr string) error      { return errors.New("not in this test") }
func (f *fakeNode) AddNonvoter(id, addr string) error   { return errors.New("not in this test") }
func (f *fakeNode) RemoveServer(id string) error {
	f.removed = append(f.removed, id)
	return nil
}

// TestRemoveKeepsAnAnsweringMajority: a removal that would leave the
// voters without a majority that answers the leader's probes is refused
// (409, field id) and changes nothing: no event, no configuration change;
// so are removing an unknown server (404) and the only one (409). A
// removal that keeps a majority is recorded, then made.
func TestRemoveKeepsAnAnsweringMajority(t *testing.T) {
	now := time.Now()
	three := []raftnode.Member{{ID: "a", Voter: true}, {ID: "b", Voter: true}, {ID: "c", Voter: true}}
	for _, tc := range []struct {
		name    string
		members []raftnode.Member
		down    []string // servers that stopped answering the probes
		remove  string
		code    int // 0: removed
	}{
		{"a down server's removal keeps a majority", three, []string{"c"}, "c", 0},
		{"removing an answering server while another is down", three, []string{"c"}, "b", http.StatusConflict},
		{"all answer", three, nil, "b", 0},
		{"unknown server", three, nil, "x", http.StatusNotFound},
		{"the only server", []raftnode.Member{{ID: "a", Voter: true}}, nil, "a", http.StatusConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := &fakeNode{members: tc.members}
			m := New(Deps{Self: "a", Node: node, Log: testutil.Logger(t)})
			m.ap = autopilot.New(nil, m) // a leader whose autopilot runs
			m.probes = map[string]*serverProbe{}
			for _, mb := range tc.members {
				if mb.ID != "a" {
					m.probes[mb.ID] = &serverProbe{firstSeen: now.Add(-time.Minute), lastOK: now}
				}
			}
			for _, id := range tc.down {
				m.probes[id].lastOK = now.Add(-time.Minute)
			}
			err := m.Remove(context.Background(), tc.remove, "test")
			if tc.code == 0 {
				if err != nil || len(node.removed) != 1 || node.removed[0] != tc.remove || len(node.applied) != 1 {
					t.Fatalf("remove %s: err %v, removed %v, applied %d; want removed after one event", tc.remove, err, node.removed, len(node.applied))
				}
				return
			}
			var ae *cluster.ApplyError
			if !errors.As(err, &ae) || ae.Code != tc.code || ae.Field != "id" {
				t.Fatalf("remove %s: %v; want %d on field id", tc.remove, err, tc.code)
			}
			if len(node.removed) != 0 || len(node.applied) != 0 {
				t.Fatalf("a refused removal changed something: removed %v, applied %d", node.removed, len(node.applied))
			}
		})
	}
}
