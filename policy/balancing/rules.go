package balancing

import (
	"fmt"
	"slices"
	"strings"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy/placement"
)

// Violation is a VM whose current host breaks a must rule: a rule added or
// changed after the VM was placed, or a move made behind Herd's back.
type Violation struct {
	VM     string `json:"vm"` // id
	Name   string `json:"name"`
	Host   string `json:"host"`
	Rule   string `json:"rule"`
	Reason string `json:"reason"` // vm-host-affinity, vm-anti-affinity, …
	// Fix is the host the plan moves the VM to, "" when it cannot.
	Fix string `json:"fix,omitempty"`
	// Why says why it cannot be fixed now.
	Why string `json:"why,omitempty"`
}

// MustViolations lists the VMs (not stale, not moving in l) whose current
// host breaks one of c's must rules, in name order; nil without rules.
func MustViolations(s *cluster.State, l *placement.Ledger, c *placement.Compiled) []Violation {
	if !c.HasRules() {
		return nil
	}
	var out []Violation
	for _, vm := range s.VMs {
		if v, ok := violation(s, l, c, vm); ok {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b Violation) int {
		if a.Name != b.Name {
			return strings.Compare(a.Name, b.Name)
		}
		return strings.Compare(a.VM, b.VM)
	})
	return out
}

// violation reports whether vm's host breaks a must rule, and which.
func violation(s *cluster.State, l *placement.Ledger, c *placement.Compiled, vm *cluster.VM) (Violation, bool) {
	h := s.Hosts[vm.Host]
	if h == nil {
		return Violation{}, false
	}
	if _, moving := l.Move(vm.ID); moving {
		return Violation{}, false
	}
	reason, rule := placement.NewRuleView(c, s, l, vm, "").Broken(h)
	if reason == "" {
		return Violation{}, false
	}
	return Violation{VM: vm.ID, Name: vm.Name, Host: vm.Host, Rule: rule, Reason: reason}, true
}

// fixViolations plans, before any balancing move, a move for each VM whose
// host breaks a must rule (held or not: a rule comes first), to the host
// placement chooses under the rules; each is checked again with the moves
// planned before it (moving one member of a pair may fix the other).
// Stopped VMs move offline. It records the violations in p.
func (b *balancer) fixViolations(p *Plan) {
	found := MustViolations(b.s, b.ledger, b.o.Policy)
	limit := b.moveLimit()
	var after *cluster.State // the state with the fixes planned so far done
	for _, v := range found {
		vm := b.s.VMs[v.VM]
		if after != nil {
			if _, still := violation(after, nil, b.o.Policy, after.VMs[v.VM]); !still {
				continue // an earlier fix moved its partner
			}
		}
		switch pl := placement.Place(b.s, b.usage, b.ledger, vm, b.o); {
		case vm.Unmovable != "":
			v.Why = "cannot move: " + vm.Unmovable
		case len(p.Moves) >= limit:
			v.Why = fmt.Sprintf("max_moves %d reached", limit)
		case pl.Host == "":
			v.Why = pl.Explain()
		default:
			v.Fix = pl.Host
			b.fixMove(p, vm, pl.Host, v.Rule)
			after = withMove(cmpOr(after, b.s), vm.ID, pl.Host)
		}
		p.Violations = append(p.Violations, v)
	}
}

// fixMove records the move of vm to host: in the planning ledger, and in
// the model when its hosts are in it.
func (b *balancer) fixMove(p *Plan, vm *cluster.VM, to, rule string) {
	src, dst := b.hosts[vm.Host], b.hosts[to]
	load := float64(vm.MemoryBytes)
	if vm.Power != cluster.PoweredOn {
		load = 0
	}
	if src != nil {
		if i := slices.IndexFunc(src.vms, func(x bVM) bool { return x.vm == vm }); i >= 0 {
			load = src.vms[i].load
			src.vms = slices.Delete(src.vms, i, i+1)
		}
	}
	b.ledger.Reserve(vm.ID, vm.Host, to, placement.MemoryNeed(vm))
	switch {
	case src != nil && dst != nil:
		b.shift(load, src, dst)
	case dst != nil:
		g := dst.group
		g.remove(dst)
		dst.load += load
		g.insert(dst)
	case src != nil:
		g := src.group
		g.remove(src)
		src.load -= load
		g.insert(src)
	}
	p.Moves = append(p.Moves, Move{VM: vm.ID, Name: vm.Name, From: vm.Host, To: to, MemoryBytes: vm.MemoryBytes,
		Offline: vm.Power != cluster.PoweredOn, Rule: rule})
}

// withMove returns a copy of s (sharing hosts and VMs, but with its own VM
// map) with VM id on host to.
func withMove(s *cluster.State, id, to string) *cluster.State {
	c := *s
	c.VMs = make(map[string]*cluster.VM, len(s.VMs))
	for k, v := range s.VMs {
		c.VMs[k] = v
	}
	nv := *s.VMs[id]
	nv.Host = to
	c.VMs[id] = &nv
	return &c
}

// cmpOr is a unless it is nil, else b.
func cmpOr(a, b *cluster.State) *cluster.State {
	if a != nil {
		return a
	}
	return b
}
