package daemon

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/policy"
)

// TestHostHealthFromTheManager: a host whose vCenter connection stops
// answering goes suspect, then dead; when it answers again it comes back
// alive after alive_after — each step in the action log.
func TestHostHealthFromTheManager(t *testing.T) {
	dev, c := startDevWith(t, 2, 2, nil, func(p *policy.Document) {
		p.Health = policy.HealthPolicy{SuspectAfter: time.Second, DeadAfter: 3 * time.Second, AliveAfter: time.Second}
		p.Recovery.Automatic = false // health only: no fencing here
	})
	ctx := context.Background()
	host := dev.Sim.HostNames()[0]
	health := func() cluster.Health {
		h, err := c.Host(ctx, host)
		if err != nil {
			return ""
		}
		return h.Health
	}
	cluster.WaitFor(t, 10*time.Second, "hosts alive", func() bool { return health() == cluster.HealthAlive })

	if err := dev.Sim.SetHostConnection(host, drivers.NotResponding); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 15*time.Second, "host dead", func() bool { return health() == cluster.HealthDead })
	var seq []string
	ev, _ := c.Events(ctx, api.EventQuery{Host: host})
	for _, e := range ev.Events {
		if e.Type == "host.health" {
			seq = append(seq, e.Message)
		}
	}
	if len(seq) < 3 {
		t.Fatalf("health events %v: want alive, suspect, dead", seq)
	}
	// A dead host needs recovery, not maintenance.
	pc, _ := c.Precheck(ctx, host, api.MaintenanceRequest{Status: "enable"})
	if pc == nil || len(pc.Blockers) == 0 {
		t.Fatalf("precheck of a dead host: %+v", pc)
	}
	if err := dev.Sim.SetHostConnection(host, drivers.Connected); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 15*time.Second, "host alive again", func() bool { return health() == cluster.HealthAlive })
	m := metricsText(t, dev.Server)
	if !containsLine(m, `herd_host_health{host="`+host+`",state="alive"} 1`) {
		t.Errorf("health metric:\n%s", grepLines(m, "herd_host_health"))
	}
}

func containsLine(text, line string) bool {
	return slices.Contains(strings.Split(text, "\n"), line)
}
