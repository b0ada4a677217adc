package placement

import (
	"fmt"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
)

// hostSet is a set of hosts of one state, by identity: hosts are immutable
// values, so placement compares pointers and never hashes a name. A short
// set is a list; a longer one a map.
type hostSet struct {
	few  []*cluster.Host
	many map[*cluster.Host]bool
}

func (n *hostSet) add(h *cluster.Host) {
	if h == nil || n.has(h) {
		return
	}
	if n.many == nil && len(n.few) < fewHosts {
		n.few = append(n.few, h)
		return
	}
	if n.many == nil {
		n.many = make(map[*cluster.Host]bool, 2*fewHosts)
		for _, f := range n.few {
			n.many[f] = true
		}
		n.few = nil
	}
	n.many[h] = true
}

func (n *hostSet) has(h *cluster.Host) bool {
	for _, f := range n.few {
		if f == h {
			return true
		}
	}
	return n.many[h]
}

// occupied returns the hosts of s where a member of group g other than
// except runs, or is moving to or from.
func (c *Compiled) occupied(g int32, s *cluster.State, l *Ledger, except string) hostSet {
	var occ hostSet
	for _, id := range c.vmGroups[g].members {
		if id == except {
			continue
		}
		m := s.VMs[id]
		running := m != nil && m.Power == cluster.PoweredOn
		if mv, ok := l.Move(id); ok {
			occ.add(s.Hosts[mv.To])
			if running {
				occ.add(s.Hosts[mv.From])
			}
		} else if running {
			occ.add(s.Hosts[m.Host])
		}
	}
	return occ
}

// anchor returns the host holding most of the other running members of
// group g (those moving count where they go), ties to the first name; nil
// when none anchors. Members on the host leaving, or on a closing host, do
// not anchor.
func (c *Compiled) anchor(g int32, s *cluster.State, l *Ledger, except, leaving string) *cluster.Host {
	var counts map[string]int
	for _, id := range c.vmGroups[g].members {
		if id == except {
			continue
		}
		at := ""
		if mv, ok := l.Move(id); ok {
			at = mv.To
		} else if m := s.VMs[id]; m != nil && m.Power == cluster.PoweredOn && m.Host != leaving && !closing(s.Hosts[m.Host]) {
			at = m.Host
		}
		if at != "" {
			if counts == nil {
				counts = map[string]int{}
			}
			counts[at]++
		}
	}
	best, most := "", 0
	for h, n := range counts {
		if n > most || n == most && h < best {
			best, most = h, n
		}
	}
	if best == "" {
		return nil
	}
	if h := s.Hosts[best]; h != nil {
		return h
	}
	// Moving to a host the state no longer holds: no host can join it.
	return &cluster.Host{Name: best}
}

// closing reports whether h is being emptied or gone, so that VMs on it are
// about to leave.
func closing(h *cluster.Host) bool {
	return h == nil || h.Maintenance != cluster.MaintenanceOff || h.Admin == cluster.InMaintenance ||
		h.Admin == cluster.Offline || h.Health == cluster.HealthDead || h.Health == cluster.HealthFenced
}

// migrating counts the members of group g other than except that l has in
// flight.
func (c *Compiled) migrating(g int32, l *Ledger, except string) int {
	if l == nil {
		return 0
	}
	n := 0
	members := c.vmGroups[g].members
	if l.Total() < len(members) {
		for id := range l.moves {
			if id != except && containsGroup(c.vmIn[id], g) {
				n++
			}
		}
		return n
	}
	for _, id := range members {
		if _, ok := l.Move(id); ok && id != except {
			n++
		}
	}
	return n
}

func containsGroup(gs []int32, g int32) bool {
	for _, x := range gs {
		if x == g {
			return true
		}
	}
	return false
}

// affinityInFlight says why vm cannot be evacuated from host yet: another
// member of one of its must vm-affinity groups is migrating, other than
// from host itself, so where the group will run is not settled. "" when
// nothing holds it.
func affinityInFlight(c *Compiled, s *cluster.State, l *Ledger, vm *cluster.VM, host string) string {
	if c == nil || l.Total() == 0 {
		return ""
	}
	for _, g := range c.groupsOf(vm) {
		for _, ri := range c.groupRules[g] {
			r := &c.rules[ri]
			if !r.must || r.Type != policy.RuleVMAffinity {
				continue
			}
			for _, id := range c.vmGroups[g].members {
				mv, ok := l.Move(id)
				if !ok || id == vm.ID || mv.From == host {
					continue
				}
				name := id
				if m := s.VMs[id]; m != nil {
					name = m.Name
				}
				return fmt.Sprintf("must vm-affinity rule %q: %s, of the same vm group %q, is migrating from %s to %s; evacuate once it has arrived",
					r.Name, name, c.vmGroups[g].name, mv.From, mv.To)
			}
		}
	}
	return ""
}
