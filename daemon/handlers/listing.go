package handlers

import (
	"fmt"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/wire"
	"github.com/herd-project/herd/policy"
)

// listing builds what the host listings show, from one state read: each
// host's usage, its stale copies, and why a dead host is not fenced.
type listing struct {
	doc   *policy.Document
	st    *cluster.State
	usage map[string]cluster.HostUsage
	stale map[string][]*cluster.StaleCopy
	storm policy.StormCount
}

func newListing(doc *policy.Document, st *cluster.State, now time.Time) *listing {
	return newListingWithUsage(doc, st, st.Usage(), now)
}

// newListingWithUsage is newListing with st's usage already summed.
func newListingWithUsage(doc *policy.Document, st *cluster.State, usage map[string]cluster.HostUsage, now time.Time) *listing {
	l := &listing{doc: doc, st: st, usage: usage, stale: map[string][]*cluster.StaleCopy{},
		storm: policy.CountStorm(st.Hosts, now, doc.Health.DeadAfter)}
	for _, c := range st.SortedStale() {
		l.stale[c.Host] = append(l.stale[c.Host], c)
	}
	return l
}

// host is h as the API shows it; detail lists its stale copies.
func (l *listing) host(h *cluster.Host, detail bool) api.Host {
	out := wire.Host(h, l.usage[h.Name], len(l.stale[h.Name]))
	out.NotFenced = l.notFenced(h)
	if !detail {
		return out
	}
	for _, c := range l.stale[h.Name] {
		// Herd never acts on it but to destroy it, and never reads it.
		var vmHost string
		if vm := l.st.VMs[c.VM]; vm != nil {
			vmHost = vm.Host
		}
		out.Stale = append(out.Stale, wire.StaleCopy(c, vmHost))
	}
	out.Silence = wire.Silence(l.st.Silences[h.Name])
	return out
}

// notFenced says why a dead host is not fenced, in the order the recovery
// controller decides (see recovery.Controller.round); empty for a host that
// is not dead.
func (l *listing) notFenced(h *cluster.Host) string {
	if h.Health != cluster.HealthDead {
		return ""
	}
	r := l.doc.Recovery
	switch {
	case l.usage[h.Name].VMs == 0:
		return "no VMs: nothing to recover, so it is not fenced"
	case !r.Automatic:
		return fmt.Sprintf("automatic recovery is off: confirm it is off by hand (herd host status %s OFFLINE --confirm-fenced)", h.Name)
	case l.storm.Storm(r.StormThreshold):
		return fmt.Sprintf("storm guard: %d of %d hosts look dead (more than %.0f%%); confirm it is off by hand (herd host status %s OFFLINE --confirm-fenced)",
			l.storm.Dead, l.storm.Total, r.StormThreshold*100, h.Name)
	case h.FenceFailure != "":
		return "fencing failed: " + h.FenceFailure
	case l.storm.Hold(r.StormThreshold):
		return fmt.Sprintf("fencing waits: %d other hosts are suspect and could make this a storm", l.storm.Suspect)
	}
	return "fencing under way"
}
