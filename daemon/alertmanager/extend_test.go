package alertmanager

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/internal/amtest"
	"github.com/herd-project/herd/metrics"
	"github.com/herd-project/herd/policy"
)

// memStore is a state changed by the commands applied to it, as the FSM
// would.
type memStore struct {
	mu    sync.Mutex
	st    *cluster.State
	index uint64
}

func (m *memStore) Read(fn func(st *cluster.State)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fn(m.st)
}

func (m *memStore) Apply(_ context.Context, cmd cluster.Command) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.index++
	return m.index, m.st.Apply(cmd, m.index)
}

// A silence is extended in place before it ends, keeps its id, and is
// made again when someone expired it by hand.
func TestSilenceExtendedBeforeItEnds(t *testing.T) {
	am := amtest.Start(t, "")
	st := cluster.NewState()
	st.Hosts["h1"] = &cluster.Host{Name: "h1", Maintenance: cluster.MaintenanceOn, Operation: "op-1"}
	store := &memStore{st: st}
	doc := policy.Default()
	doc.Alertmanager = policy.NewAlertmanagerPolicy(am.URL)
	c := NewSilencer(Deps{Store: store, Policy: func() *policy.Document { return doc }, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics: metrics.NewAlertmanager(prometheus.NewRegistry())})
	now := time.Now()
	c.now = func() time.Time { return now }
	ctx := context.Background()
	if err := c.Round(ctx, false); err != nil {
		t.Fatal(err)
	}
	first := *st.Silences["h1"]
	if !first.EndsAt.Equal(now.Add(time.Hour).UTC()) {
		t.Fatalf("first silence ends %s, want in an hour", first.EndsAt)
	}
	// Not yet half way: nothing to do.
	now = now.Add(20 * time.Minute)
	if err := c.Round(ctx, false); err != nil {
		t.Fatal(err)
	}
	if *st.Silences["h1"] != first {
		t.Fatalf("silence changed early: %+v", st.Silences["h1"])
	}
	// Past half way: extended, same id, new end in Alertmanager too.
	now = now.Add(15 * time.Minute)
	if err := c.Round(ctx, false); err != nil {
		t.Fatal(err)
	}
	ext := *st.Silences["h1"]
	if ext.ID != first.ID || !ext.EndsAt.Equal(now.Add(time.Hour).UTC()) {
		t.Fatalf("extension: %+v, first %+v", ext, first)
	}
	ss := am.ActiveSilences("host h1 ")
	if len(ss) != 1 || ss[0].ID != first.ID || ss[0].EndsAt.Sub(ext.EndsAt).Abs() > time.Second {
		t.Fatalf("Alertmanager has %+v, want %s ending %s", ss, first.ID, ext.EndsAt)
	}
	// Expired by hand: the next verification makes it again (back to
	// Alertmanager's clock, or the new silence would only be pending).
	now = time.Now()
	cl, _ := NewClient(doc.Alertmanager)
	if err := cl.ExpireSilence(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.Round(ctx, true); err != nil {
		t.Fatal(err)
	}
	if again := st.Silences["h1"]; again.ID == first.ID || len(am.ActiveSilences("host h1 ")) != 1 {
		t.Fatalf("silence expired by hand was not made again: %+v", again)
	}
	// Out of maintenance: expired and forgotten.
	st.Hosts["h1"] = &cluster.Host{Name: "h1", Maintenance: cluster.MaintenanceOff}
	if err := c.Round(ctx, false); err != nil {
		t.Fatal(err)
	}
	if st.Silences["h1"] != nil || len(am.ActiveSilences("host h1 ")) != 0 {
		t.Fatalf("silence left after maintenance: %+v", st.Silences["h1"])
	}
}
