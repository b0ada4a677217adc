// Package placement decides where VMs go: the policy compiled against a
// state (groups, rules, budgets), feasibility filters then a scorer, the
// ledger of moves in flight, the migration concurrency limits, and, built on
// them, how a host is evacuated for maintenance and how fast that can be
// done. Nothing here calls a driver, raft, a clock or the network: these are
// pure functions of a snapshot of cluster state, and controllers execute
// the plans.
package placement

import (
	"slices"
	"strings"
)

// Move is one in-flight migration recorded in a Ledger.
type Move struct {
	VM    string `json:"vm"`
	From  string `json:"from"`
	To    string `json:"to"`
	Bytes int64  `json:"bytes"`
}

// hostLoad is what in-flight moves put on one host: memory reserved on it as
// a target and the number of moves to and from it.
type hostLoad struct {
	reserved int64
	to, from int
}

// Ledger tracks the memory that in-flight migrations reserve on their target
// hosts, and how many migrations leave and enter each host. Every planner
// that places VMs while others are moving (several hosts evacuating at once,
// recovery, balancing) must share one Ledger, so that targets are never
// overcommitted by moves that the state does not show yet.
//
// A Ledger is not safe for concurrent use: the controller's migration gate
// owns it. Reads on a nil *Ledger behave as on an empty one.
type Ledger struct {
	moves map[string]Move
	hosts map[string]hostLoad
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{moves: map[string]Move{}, hosts: map[string]hostLoad{}}
}

// Reserve records that vmID is moving from one host to another and needs
// bytes of memory on the target (zero for a VM that will not run there, such
// as a powered-off VM being offline-migrated). A second Reserve for the same
// VM replaces the first. Negative sizes count as zero.
func (l *Ledger) Reserve(vmID, from, to string, bytes int64) {
	if l.moves == nil {
		l.moves, l.hosts = map[string]Move{}, map[string]hostLoad{}
	}
	l.Release(vmID)
	if bytes < 0 {
		bytes = 0
	}
	l.moves[vmID] = Move{VM: vmID, From: from, To: to, Bytes: bytes}
	t := l.hosts[to]
	t.reserved += bytes
	t.to++
	l.hosts[to] = t
	f := l.hosts[from]
	f.from++
	l.hosts[from] = f
}

// Release forgets the move of vmID (finished, failed or cancelled) and frees
// what it reserved. Releasing a VM that is not moving does nothing.
func (l *Ledger) Release(vmID string) {
	if l == nil {
		return
	}
	m, ok := l.moves[vmID]
	if !ok {
		return
	}
	delete(l.moves, vmID)
	t := l.hosts[m.To]
	t.reserved -= m.Bytes
	t.to--
	l.put(m.To, t)
	f := l.hosts[m.From]
	f.from--
	l.put(m.From, f)
}

// put stores a host's load, dropping it once nothing refers to the host so
// that lookups stay cheap for the many hosts without moves.
func (l *Ledger) put(host string, h hostLoad) {
	if h == (hostLoad{}) {
		delete(l.hosts, host)
		return
	}
	l.hosts[host] = h
}

// load returns the in-flight load of host.
func (l *Ledger) load(host string) hostLoad {
	if l == nil || len(l.hosts) == 0 {
		return hostLoad{}
	}
	return l.hosts[host]
}

// Reserved returns the memory in bytes that in-flight moves reserve on host.
func (l *Ledger) Reserved(host string) int64 { return l.load(host).reserved }

// InFlightTo returns how many in-flight moves target host.
func (l *Ledger) InFlightTo(host string) int { return l.load(host).to }

// InFlightFrom returns how many in-flight moves leave host.
func (l *Ledger) InFlightFrom(host string) int { return l.load(host).from }

// Total returns the number of in-flight moves.
func (l *Ledger) Total() int {
	if l == nil {
		return 0
	}
	return len(l.moves)
}

// Move returns the in-flight move of vmID, if any.
func (l *Ledger) Move(vmID string) (Move, bool) {
	if l == nil {
		return Move{}, false
	}
	m, ok := l.moves[vmID]
	return m, ok
}

// Moves returns the in-flight moves, by VM id.
func (l *Ledger) Moves() []Move {
	if l == nil {
		return nil
	}
	out := make([]Move, 0, len(l.moves))
	for _, m := range l.moves {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Move) int { return strings.Compare(a.VM, b.VM) })
	return out
}

// Clone returns an independent copy of l, for planning "what if" without
// touching the ledger the controller uses. Cloning nil gives an empty ledger.
func (l *Ledger) Clone() *Ledger {
	c := NewLedger()
	if l == nil {
		return c
	}
	for k, v := range l.moves {
		c.moves[k] = v
	}
	for k, v := range l.hosts {
		c.hosts[k] = v
	}
	return c
}
