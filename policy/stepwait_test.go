package policy

import (
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
)

// TestWaitForSource: a migration step whose source host's connection is
// down waits (not counted) until it is back, for at most the bound; a
// host declared dead or fenced ends the wait at once, whatever its
// connection.
func TestWaitForSource(t *testing.T) {
	bound := 2 * time.Minute
	tests := []struct {
		name   string
		health cluster.Health
		conn   cluster.Connection
		waited time.Duration
		want   SourceWait
	}{
		{"connected", cluster.HealthAlive, cluster.Connected, 0, SourceReady},
		{"connected after a wait", cluster.HealthAlive, cluster.Connected, time.Minute, SourceReady},
		{"suspect but connected", cluster.HealthSuspect, cluster.Connected, 0, SourceReady},
		{"connection unknown", cluster.HealthUnknown, "", 0, SourceReady},
		{"not responding", cluster.HealthAlive, cluster.NotResponding, 0, SourceWaiting},
		{"disconnected", cluster.HealthAlive, cluster.Disconnected, time.Second, SourceWaiting},
		{"not responding and suspect", cluster.HealthSuspect, cluster.NotResponding, time.Minute, SourceWaiting},
		{"just inside the bound", cluster.HealthAlive, cluster.NotResponding, bound - time.Millisecond, SourceWaiting},
		{"bound reached", cluster.HealthAlive, cluster.NotResponding, bound, SourceWaitOver},
		{"dead", cluster.HealthDead, cluster.NotResponding, 0, SourceDown},
		{"fenced", cluster.HealthFenced, cluster.Disconnected, time.Second, SourceDown},
		{"dead though the connection is up", cluster.HealthDead, cluster.Connected, 0, SourceDown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := WaitForSource(tt.health, tt.conn, tt.waited, bound); got != tt.want {
				t.Errorf("WaitForSource(%s, %s, %s) = %s, want %s", tt.health, tt.conn, tt.waited, got, tt.want)
			}
		})
	}
}
