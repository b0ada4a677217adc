package placement

import (
	"fmt"
	"sort"
	"strings"
)

// Placement is the outcome of placing one VM.
type Placement struct {
	// Host is the chosen target, "" when no host fits.
	Host string `json:"host"`
	// Rejections counts the hosts rejected, by reason: all of them when no
	// host fits, those examined when Place chose one after a limited scan.
	Rejections map[string]int `json:"rejections,omitempty"`
	// Detail says more about some reasons: which rules rejected hosts
	// (`rule "db-on-ssd"`), which disruption budget is used up.
	Detail map[string]string `json:"detail,omitempty"`
}

// Transient reports whether nothing fits only because feasible targets are
// at their concurrency limit, or the VM's group is at its disruption
// budget: the VM should wait rather than fail.
func (p Placement) Transient() bool {
	return p.Host == "" && (p.Rejections[ReasonTargetBusy] > 0 || p.Rejections[ReasonDisruptionBudget] > 0)
}

// Explain says where the VM goes or why it cannot go anywhere, such as
// "no target: 3 hosts insufficient-memory, 1 host vm-host-affinity (rule
// "db-on-ssd")" (most common reason first).
func (p Placement) Explain() string {
	if p.Host != "" {
		return "target " + p.Host
	}
	if len(p.Rejections) == 0 {
		return "no target: no hosts"
	}
	reasons := make([]string, 0, len(p.Rejections))
	for r := range p.Rejections {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool {
		ci, cj := p.Rejections[reasons[i]], p.Rejections[reasons[j]]
		if ci != cj {
			return ci > cj
		}
		return reasons[i] < reasons[j]
	})
	var b strings.Builder
	b.WriteString("no target: ")
	for i, r := range reasons {
		if i > 0 {
			b.WriteString(", ")
		}
		n := p.Rejections[r]
		unit := "hosts"
		if n == 1 {
			unit = "host"
		}
		fmt.Fprintf(&b, "%d %s %s", n, unit, r)
		if d := p.Detail[r]; d != "" {
			fmt.Fprintf(&b, " (%s)", d)
		}
	}
	return b.String()
}

// tally counts rejections by reason, with the rules behind them.
type tally struct {
	counts [numReasons]int
	rules  [numReasons][]string
	budget string
}

// add counts one host rejected for r, by the named rule if any.
func (t *tally) add(r reason, rule string) {
	t.counts[r]++
	if rule == "" {
		return
	}
	for _, n := range t.rules[r] {
		if n == rule {
			return
		}
	}
	t.rules[r] = append(t.rules[r], rule)
}

// placement returns the outcome: host ("" for none) and the rejections.
func (t *tally) placement(host string) Placement {
	p := Placement{Host: host, Rejections: rejectionMap(&t.counts)}
	for r := rSameHost; r < numReasons; r++ {
		d := ""
		switch {
		case t.counts[r] == 0:
		case len(t.rules[r]) == 1:
			d = fmt.Sprintf("rule %q", t.rules[r][0])
		case len(t.rules[r]) > 1:
			q := make([]string, len(t.rules[r]))
			for i, n := range t.rules[r] {
				q[i] = fmt.Sprintf("%q", n)
			}
			d = "rules " + strings.Join(q, ", ")
		case r == rDisruptionBudget:
			d = t.budget
		}
		if d != "" {
			if p.Detail == nil {
				p.Detail = map[string]string{}
			}
			p.Detail[reasonNames[r]] = d
		}
	}
	return p
}

// rejectionMap turns reason counts into a Placement's map.
func rejectionMap(counts *[numReasons]int) map[string]int {
	var m map[string]int
	for r := rSameHost; r < numReasons; r++ {
		if counts[r] > 0 {
			if m == nil {
				m = make(map[string]int, 4)
			}
			m[reasonNames[r]] = counts[r]
		}
	}
	return m
}
