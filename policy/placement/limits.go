package placement

import (
	"fmt"

	"github.com/herd-project/herd/policy"
)

// Limits caps concurrent migrations. The defaults are 2 leaving any host, 2
// entering any host and 8 in the whole cluster. That is more conservative
// than vCenter, which admits 4 concurrent vMotions per host on a 1 GbE
// vMotion network and 8 on 10 GbE ("Limits on Simultaneous Migrations" in
// the vSphere documentation): Herd may drive libvirt hosts that share one
// network for migration and VM traffic, and with largest-first dispatch two
// streams per host already keep a link busy. Raise them for fast networks.
type Limits struct {
	// PerSource caps the moves leaving one host.
	PerSource int `json:"per_source" yaml:"per_source"`
	// PerTarget caps the moves entering one host.
	PerTarget int `json:"per_target" yaml:"per_target"`
	// Cluster caps the moves in flight in the whole cluster.
	Cluster int `json:"cluster" yaml:"cluster"`
}

// DefaultLimits returns 2 per source, 2 per target, 8 in the cluster.
func DefaultLimits() Limits {
	return Limits{PerSource: 2, PerTarget: 2, Cluster: 8}
}

// Validate checks that every limit is at least 1, naming the field at fault.
func (l Limits) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"per_source", l.PerSource}, {"per_target", l.PerTarget}, {"cluster", l.Cluster}} {
		if f.v < 1 {
			return &policy.FieldError{Field: f.name, Msg: fmt.Sprintf("must be at least 1, got %d", f.v)}
		}
	}
	return nil
}

// Allow reports whether one more move from one host to another stays within
// the limits, given the moves in flight in ledger.
func (l Limits) Allow(ledger *Ledger, from, to string) bool {
	return ledger.Total() < l.Cluster &&
		ledger.InFlightFrom(from) < l.PerSource &&
		ledger.InFlightTo(to) < l.PerTarget
}
