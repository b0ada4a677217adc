package alertmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/metrics"
	"github.com/herd-project/herd/policy"
)

// Store is what the controllers need of the replicated state.
type Store interface {
	// Read calls fn with the live state under a read lock.
	Read(fn func(st *cluster.State))
	Apply(ctx context.Context, cmd cluster.Command) (uint64, error)
}

// Deps are what the Alertmanager controller and webhook use of the
// server.
type Deps struct {
	Store   Store
	Policy  func() *policy.Document
	Log     *slog.Logger
	Metrics *metrics.Alertmanager
	// Wake receives the index of every applied raft entry
	// (cluster.FSM.Watch); nil: the silencer wakes on its timer only.
	Wake <-chan uint64
}

// Actor is the name Herd's Alertmanager work has in events.
const Actor = "alertmanager"

// Timing of the silence controller.
const (
	// resync is the longest pause between two rounds.
	resync = 15 * time.Second
	// verifyEvery is how often the recorded silences are checked against
	// Alertmanager (one may have been expired by hand, or lost with an
	// Alertmanager's data).
	verifyEvery = time.Minute
	minBackoff  = 500 * time.Millisecond
	maxBackoff  = 30 * time.Second
	// minGap spaces rounds woken by raft entries.
	minGap = 200 * time.Millisecond
)

// Silencer keeps one Alertmanager silence for every host in maintenance,
// whatever put it there (an operator, the degraded_query, a rollout, an
// alert): it watches the hosts' maintenance state, not the requests. It
// runs on the leader; the silences' ids are in the replicated state, so a
// new leader extends or expires them. An Alertmanager that does not answer
// is retried with backoff and reported; maintenance never waits for it.
type Silencer struct {
	store  Store
	policy func() *policy.Document
	log    *slog.Logger
	errs   *prometheus.CounterVec
	wake   <-chan uint64
	now    func() time.Time

	mu      sync.Mutex
	client  *Client
	clientP *policy.AlertmanagerPolicy
	failing bool
}

// NewSilencer builds the controller.
func NewSilencer(d Deps) *Silencer {
	return &Silencer{store: d.Store, policy: d.Policy, log: d.Log.With("component", "silences"), errs: d.Metrics.Errors, wake: d.Wake, now: time.Now}
}

// Name implements the daemon's Controller.
func (c *Silencer) Name() string { return "alertmanager-silences" }

// Run keeps silences in step with maintenance until ctx ends.
func (c *Silencer) Run(ctx context.Context) {
	backoff := time.Duration(0)
	var lastVerify, lastRound time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-c.wake:
			if backoff > 0 {
				continue // the timer brings the retry
			}
			if wait := minGap - c.now().Sub(lastRound); wait > 0 {
				// Many entries in a row: one round for them all.
				resetTimer(timer, wait)
				continue
			}
		}
		lastRound = c.now()
		verify := c.now().Sub(lastVerify) >= verifyEvery
		err := c.Round(ctx, verify)
		if ctx.Err() != nil {
			return
		}
		next := resync
		if err != nil {
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			next = backoff
			c.log.Warn("alertmanager silences", "err", err, "retry_in", backoff)
		} else {
			backoff = 0
			if verify {
				lastVerify = c.now()
			}
		}
		resetTimer(timer, next)
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

// Want is why a host should be silenced: its maintenance operation and
// the silence's comment.
type Want struct {
	Op, Why string
}

// Wanted returns the hosts whose alerts should be silenced now, with the
// comment of each silence: every host in maintenance (entering, on, error,
// cancelled or exiting) or with admin status MAINTENANCE.
func Wanted(st *cluster.State) map[string]Want {
	out := map[string]Want{}
	for name, h := range st.Hosts {
		inMaint := h.Maintenance != "" && h.Maintenance != cluster.MaintenanceOff
		if !inMaint && h.Admin != cluster.InMaintenance {
			continue
		}
		w := Want{Op: h.Operation}
		switch op := st.Operations[h.Operation]; {
		case inMaint && op != nil:
			w.Why = fmt.Sprintf("host %s in maintenance (%s): operation %s (%s) by %s", name, h.Maintenance, op.ID, op.Kind, op.Actor)
		case inMaint:
			w.Why = fmt.Sprintf("host %s in maintenance (%s): operation %s", name, h.Maintenance, h.Operation)
		default:
			w.Op = ""
			w.Why = fmt.Sprintf("host %s has admin status MAINTENANCE: %s", name, h.AdminReason)
		}
		out[name] = w
	}
	return out
}

func (c *Silencer) clientFor(am *policy.AlertmanagerPolicy) (*Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != nil && c.clientP == am {
		return c.client, nil
	}
	cl, err := NewClient(am)
	if err != nil {
		return nil, err
	}
	c.client, c.clientP = cl, am
	return cl, nil
}

// fail counts a failed call and records an event for the first failure of
// a streak.
func (c *Silencer) fail(ctx context.Context, op string, err error) error {
	c.errs.WithLabelValues(op).Inc()
	c.mu.Lock()
	first := !c.failing
	c.failing = true
	c.mu.Unlock()
	if first {
		ev := cluster.NewEvent("alertmanager.error", Actor, "", "", fmt.Sprintf("Alertmanager %s failed (retried with backoff; maintenance goes on without silences): %v", op, err))
		if _, aerr := c.store.Apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{ev}}); aerr != nil {
			c.log.Warn("record alertmanager error", "err", aerr)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

func (c *Silencer) ok(ctx context.Context) {
	c.mu.Lock()
	was := c.failing
	c.failing = false
	c.mu.Unlock()
	if was {
		ev := cluster.NewEvent("alertmanager.ok", Actor, "", "", "Alertmanager answers again")
		if _, err := c.store.Apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{ev}}); err != nil {
			c.log.Warn("record alertmanager ok", "err", err)
		}
	}
}

// Round brings the silences in step with maintenance once. Alertmanager is
// asked only when something is to be done, or to verify the recorded
// silences.
func (c *Silencer) Round(ctx context.Context, verify bool) error {
	doc := c.policy()
	if doc == nil || doc.Alertmanager == nil || len(doc.Alertmanager.URLs) == 0 {
		return nil
	}
	am := doc.Alertmanager
	st := c.read()
	now := c.now()
	wanted := st.wanted
	if !verify && !c.due(st, wanted, am, now) {
		return nil
	}
	cl, err := c.clientFor(am)
	if err != nil {
		return c.fail(ctx, "config", err)
	}
	list, err := cl.Silences(ctx)
	if err != nil {
		return c.fail(ctx, "list", err)
	}
	byID := map[string]Silence{}
	for _, s := range list {
		byID[s.ID] = s
	}
	var errs []error
	for _, host := range sortedKeys(wanted) {
		if err := c.keep(ctx, cl, am, st, host, wanted[host], byID, list, now); err != nil {
			errs = append(errs, err)
		}
	}
	for _, host := range sortedKeys(st.Silences) {
		if _, ok := wanted[host]; ok {
			continue
		}
		if err := c.expire(ctx, cl, st.Silences[host], byID); err != nil {
			errs = append(errs, err)
		}
	}
	c.orphans(ctx, cl, am, st, wanted, list)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.ok(ctx)
	return nil
}

// view is what a round reads of the state.
type view struct {
	wanted   map[string]Want
	Silences map[string]*cluster.Silence
	hosts    []string
}

func (v view) HostNames() []string { return v.hosts }

func (c *Silencer) read() view {
	var v view
	c.store.Read(func(st *cluster.State) {
		v.wanted = Wanted(st)
		v.Silences = maps.Clone(st.Silences)
		v.hosts = st.HostNames()
	})
	return v
}

// due reports whether a silence is to be made, extended, updated or
// expired, from the state alone.
func (c *Silencer) due(st view, wanted map[string]Want, am *policy.AlertmanagerPolicy, now time.Time) bool {
	for host, w := range wanted {
		rec := st.Silences[host]
		if rec == nil || rec.Operation != w.Op || rec.EndsAt.Sub(now) < am.SilenceDuration/2 {
			return true
		}
	}
	for host := range st.Silences {
		if _, ok := wanted[host]; !ok {
			return true
		}
	}
	return false
}

func live(s Silence, now time.Time) bool {
	return s.ID != "" && s.Active() && s.EndsAt.After(now)
}

func sameMatchers(a, b []policy.Matcher) bool {
	key := func(ms []policy.Matcher) []string {
		out := make([]string, 0, len(ms))
		for _, m := range ms {
			out = append(out, m.String())
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}

// keep makes, extends or updates host's silence.
func (c *Silencer) keep(ctx context.Context, cl *Client, am *policy.AlertmanagerPolicy, st view, host string, w Want,
	byID map[string]Silence, list []Silence, now time.Time) error {
	matchers, err := am.SilenceMatchers(host)
	if err != nil {
		return c.fail(ctx, "config", err)
	}
	rec := st.Silences[host]
	var cur Silence
	if rec != nil {
		cur = byID[rec.ID]
	}
	if !live(cur, now) {
		// Adopt a live silence of ours for the host that the state does
		// not know (its record was lost with a leader): no duplicates.
		cur = Silence{}
		for _, s := range list {
			if s.CreatedBy == CreatedBy && live(s, now) && sameMatchers(s.Matchers, matchers) {
				cur = s
				break
			}
		}
	}
	if rec != nil && cur.ID == rec.ID && rec.Operation == w.Op && rec.EndsAt.Sub(now) >= am.SilenceDuration/2 &&
		sameMatchers(cur.Matchers, matchers) {
		return nil
	}
	s := Silence{ID: cur.ID, Matchers: matchers, StartsAt: now.UTC(), EndsAt: now.Add(am.SilenceDuration).UTC(), CreatedBy: CreatedBy,
		Comment: "Herd: " + w.Why}
	if cur.ID != "" {
		s.StartsAt = cur.StartsAt // an active silence keeps its start, or Alertmanager replaces it
	}
	id, err := cl.PostSilence(ctx, s)
	if err != nil {
		return c.fail(ctx, "create", err)
	}
	s.ID = id
	if cur.ID != id {
		s.StartsAt = now.UTC()
	}
	rs := cluster.Silence{Host: host, ID: id, Operation: w.Op, StartsAt: s.StartsAt, EndsAt: s.EndsAt}
	cmd := &cluster.SetSilence{Silence: rs}
	if rec == nil || rec.ID != id {
		cmd.Event = cluster.NewEvent("alertmanager.silenced", Actor, host, "",
			fmt.Sprintf("host %s: alerts silenced in Alertmanager (silence %s, %s, until %s unless extended; Herd's own alerts are not silenced)",
				host, id, matcherList(matchers[:len(matchers)-1]), s.EndsAt.Format(time.RFC3339)))
		cmd.Event.Operation = w.Op
	}
	if _, err := c.store.Apply(ctx, cmd); err != nil {
		return fmt.Errorf("record silence of %s: %w", host, err)
	}
	return nil
}

func matcherList(ms []policy.Matcher) string {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		parts = append(parts, m.String())
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// expire ends the silence of a host that left maintenance, then forgets
// it.
func (c *Silencer) expire(ctx context.Context, cl *Client, rec *cluster.Silence, byID map[string]Silence) error {
	if s, ok := byID[rec.ID]; ok && s.Active() {
		if err := cl.ExpireSilence(ctx, rec.ID); err != nil && !errors.Is(err, ErrNotFound) {
			return c.fail(ctx, "expire", err)
		}
	}
	ev := cluster.NewEvent("alertmanager.unsilenced", Actor, rec.Host, "", fmt.Sprintf("host %s left maintenance: silence %s expired", rec.Host, rec.ID))
	if _, err := c.store.Apply(ctx, &cluster.ClearSilence{Host: rec.Host, ID: rec.ID, Event: ev}); err != nil {
		return fmt.Errorf("forget silence of %s: %w", rec.Host, err)
	}
	return nil
}

// orphans expires live silences Herd made for hosts out of maintenance
// that no record names (made by a leader that lost its record).
func (c *Silencer) orphans(ctx context.Context, cl *Client, am *policy.AlertmanagerPolicy, st view, wanted map[string]Want, list []Silence) {
	recorded := map[string]bool{}
	for _, r := range st.Silences {
		recorded[r.ID] = true
	}
	now := c.now()
	for _, host := range st.HostNames() {
		if _, ok := wanted[host]; ok {
			continue
		}
		matchers, err := am.SilenceMatchers(host)
		if err != nil {
			return
		}
		for _, s := range list {
			if s.CreatedBy != CreatedBy || !live(s, now) || recorded[s.ID] || !sameMatchers(s.Matchers, matchers) {
				continue
			}
			if err := cl.ExpireSilence(ctx, s.ID); err != nil && !errors.Is(err, ErrNotFound) {
				c.errs.WithLabelValues("expire").Inc()
				c.log.Warn("expire orphan silence", "host", host, "silence", s.ID, "err", err)
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
