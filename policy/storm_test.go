package policy

import (
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
)

func TestCountStorm(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	deadAfter := 10 * time.Second
	host := func(h cluster.Health, downAgo time.Duration) *cluster.Host {
		x := &cluster.Host{Health: h}
		if downAgo >= 0 {
			x.DownSince = now.Add(-downAgo)
		}
		return x
	}
	alive := func() *cluster.Host { return host(cluster.HealthAlive, -1) }
	tests := []struct {
		name        string
		hosts       []*cluster.Host
		dead, susp  int
		storm, hold bool
	}{
		{"all alive", []*cluster.Host{alive(), alive(), alive()}, 0, 0, false, false},
		{"one dead of three", []*cluster.Host{host(cluster.HealthDead, 0), alive(), alive()}, 1, 0, false, false},
		{"two dead of three", []*cluster.Host{host(cluster.HealthDead, 0), host(cluster.HealthDead, 0), alive()}, 2, 0, true, true},
		{"half is not more than half", []*cluster.Host{host(cluster.HealthDead, 0), host(cluster.HealthDead, 0), alive(), alive()}, 2, 0, false, false},
		// The first host was fenced before the second turned dead: still
		// two down at once.
		{"fenced a moment ago counts", []*cluster.Host{host(cluster.HealthFenced, 2*time.Second), host(cluster.HealthDead, 0), alive()}, 2, 0, true, true},
		{"fenced long ago does not", []*cluster.Host{host(cluster.HealthFenced, time.Hour), host(cluster.HealthDead, 0), alive()}, 1, 0, false, false},
		{"fenced at the window's edge", []*cluster.Host{host(cluster.HealthFenced, 2*deadAfter), host(cluster.HealthDead, 0), alive()}, 2, 0, true, true},
		// One dead while another is suspect: wait before fencing.
		{"suspect holds", []*cluster.Host{host(cluster.HealthDead, 0), host(cluster.HealthSuspect, -1), alive()}, 1, 1, false, true},
		{"suspect in a big cluster does not", []*cluster.Host{host(cluster.HealthDead, 0), host(cluster.HealthSuspect, -1), alive(), alive(), alive()}, 1, 1, false, false},
		{"no hosts", nil, 0, 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hosts := map[string]*cluster.Host{}
			for i, h := range tt.hosts {
				hosts[string(rune('a'+i))] = h
			}
			c := CountStorm(hosts, now, deadAfter)
			if c.Dead != tt.dead || c.Suspect != tt.susp || c.Total != len(tt.hosts) {
				t.Errorf("count = %+v, want dead %d suspect %d total %d", c, tt.dead, tt.susp, len(tt.hosts))
			}
			if got := c.Storm(0.5); got != tt.storm {
				t.Errorf("storm = %v, want %v", got, tt.storm)
			}
			if got := c.Hold(0.5); got != tt.hold {
				t.Errorf("hold = %v, want %v", got, tt.hold)
			}
		})
	}
}
