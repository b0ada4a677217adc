package libvirt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/herd-project/herd/drivers"
)

const (
	// liveFlags make a peer-to-peer live migration that leaves the domain
	// defined on the target only.
	liveFlags = golibvirt.MigrateLive | golibvirt.MigratePeer2peer |
		golibvirt.MigratePersistDest | golibvirt.MigrateUndefineSource
	// jobPoll is how often a live migration's progress is read.
	jobPoll = time.Second
	// abortTimeout bounds DomainAbortJob once ctx is done.
	abortTimeout = 5 * time.Second
	// abortGrace is how long Migrate waits, after the abort, for libvirt to
	// end the migration and say where the domain is.
	abortGrace = 10 * time.Second
	// offlineUndefineFlags drop the source's definition and metadata but
	// keep its NVRAM file, which the target may share.
	offlineUndefineFlags = golibvirt.DomainUndefineSnapshotsMetadata |
		golibvirt.DomainUndefineCheckpointsMetadata | golibvirt.DomainUndefineKeepNvram
)

// Migrate moves VM id to host target. Live: a peer-to-peer live migration
// run by the source's libvirtd; when ctx is done first, the migration is
// aborted and the domain keeps running on the source (Migrate then waits up
// to abortTimeout+abortGrace for libvirt to confirm). Offline: the shut-off
// domain is defined on target and undefined on its host. A VM already on
// target is left as it is.
func (d *Driver) Migrate(ctx context.Context, id, target string, kind drivers.MigrationKind) error {
	fail := func(err error) error { return fmt.Errorf("migrate %s to %s: %w", id, target, err) }
	if kind != drivers.Live && kind != drivers.Offline {
		return fail(fmt.Errorf("migration kind %q: %w", kind, drivers.ErrNotSupported))
	}
	th, err := d.host(target)
	if err != nil {
		return fail(err)
	}
	ps, err := d.settled(ctx, id)
	if err != nil {
		return fail(err)
	}
	var active, others []placement
	onTarget := false
	for _, p := range ps {
		switch {
		case p.active():
			active = append(active, p)
		case p.host == th:
			onTarget = true
		default:
			others = append(others, p)
		}
	}
	switch {
	case len(active) > 1:
		return fail(fmt.Errorf("running on %d hosts (%s and %s)", len(active), active[0].host.cfg.Name, active[1].host.cfg.Name))
	case kind == drivers.Live && len(active) == 0:
		return fail(errors.New("live migration needs a running VM, it is shut off"))
	case kind == drivers.Live && active[0].host == th && active[0].state != golibvirt.DomainRunning:
		// A paused copy on the target, the source gone: what a migration
		// cut off by its source's death can leave, never a finished one.
		return fail(fmt.Errorf("the only copy, on %s, is paused (reason %d), not running: not a finished migration", target, active[0].reason))
	case kind == drivers.Live && active[0].host == th:
		d.log.Info("VM already on target host", "vm", id, "host", target)
		return nil
	case kind == drivers.Live:
		err = d.migrateLive(ctx, active[0], th)
	case len(active) == 1:
		return fail(fmt.Errorf("offline migration needs a shut-off VM, it runs on %s", active[0].host.cfg.Name))
	case len(others) == 0:
		d.log.Info("VM already on target host", "vm", id, "host", target)
		return nil
	case len(others) > 1:
		return fail(fmt.Errorf("defined on %d other hosts (%s and %s)", len(others), others[0].host.cfg.Name, others[1].host.cfg.Name))
	default:
		err = d.migrateOffline(ctx, others[0], th, onTarget)
	}
	if err != nil {
		return fail(err)
	}
	return nil
}

// settled locates VM id once no copy of it has a job under way or is
// paused by a migration: a live migration a previous caller started (a
// leader that died, a timed-out step) goes on in the source's libvirtd,
// with a paused incoming copy on its target. Deciding during it would see
// the VM on two hosts, or take the incoming copy for the VM (when the
// source cannot be asked: the copy dies with the migration); after it, the
// VM is on one of them. It waits as long as ctx allows.
func (d *Driver) settled(ctx context.Context, id string) ([]placement, error) {
	waited := time.Time{}
	for {
		ps, err := d.locate(ctx, id)
		if err != nil {
			return nil, err
		}
		busy := ""
		for _, p := range ps {
			if p.active() && (p.inTransit() || d.jobActive(ctx, p)) {
				busy = p.host.cfg.Name
				break
			}
		}
		if busy == "" {
			if !waited.IsZero() {
				d.log.Info("job under way ended", "vm", id, "waited", time.Since(waited).Round(time.Millisecond))
			}
			return ps, nil
		}
		if waited.IsZero() {
			waited = time.Now()
			d.log.Info("VM has a job under way (a migration started earlier): waiting for it to end", "vm", id, "host", busy)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("a job under way on %s did not end: %w", busy, timeoutError(ctx, "wait for job"))
		case <-time.After(jobPoll):
		}
	}
}

// jobActive says whether copy p has a job running (an outgoing or incoming
// migration). A copy that cannot be asked counts as not busy: the action
// that follows fails on its own.
func (d *Driver) jobActive(ctx context.Context, p placement) bool {
	typ, err := query(ctx, p.host, "job info", func(l *golibvirt.Libvirt) (int32, error) {
		t, _, _, _, _, _, _, _, _, _, _, _, err := l.DomainGetJobInfo(p.dom)
		return t, err
	})
	if err != nil {
		return false
	}
	return golibvirt.DomainJobType(typ) != golibvirt.DomainJobNone
}

// migrateParams are the typed parameters of a live migration to th.
func (d *Driver) migrateParams(th *hostConn) []golibvirt.TypedParam {
	var params []golibvirt.TypedParam
	if uri := th.migrateURI(); uri != "" {
		params = append(params,
			golibvirt.TypedParam{Field: golibvirt.MigrateParamURI, Value: *golibvirt.NewTypedParamValueString(uri)},
			golibvirt.TypedParam{Field: golibvirt.MigrateParamListenAddress, Value: *golibvirt.NewTypedParamValueString(th.cfg.MigrationAddress)})
	}
	if d.cfg.Bandwidth > 0 {
		params = append(params, golibvirt.TypedParam{Field: golibvirt.MigrateParamBandwidth, Value: *golibvirt.NewTypedParamValueUllong(d.cfg.Bandwidth)})
	}
	return params
}

// migrateLive runs DomainMigratePerform3Params on the source's connection,
// logging progress, and aborts the job when ctx is done.
func (d *Driver) migrateLive(ctx context.Context, src placement, th *hostConn) error {
	sh, id := src.host, formatUUID(src.dom.UUID)
	log := d.log.With("vm", id, "name", src.dom.Name, "from", sh.cfg.Name, "to", th.cfg.Name)
	connectCtx, cancel := context.WithTimeout(ctx, sh.callTimeout)
	s, err := sh.session(connectCtx)
	cancel()
	if err != nil {
		return err
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := s.l.DomainMigratePerform3Params(src.dom, golibvirt.OptString{th.peerURI()}, d.migrateParams(th), nil, liveFlags)
		done <- err
	}()
	log.Info("live migration started")
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go watchProgress(watchCtx, src, log)
	select {
	case err := <-done:
		if err != nil {
			if connectionLost(err) {
				sh.drop(s, classify(err))
			}
			return fmt.Errorf("live migration from %s: %w", sh.cfg.Name, classify(err))
		}
		log.Info("live migration done", "took", time.Since(start).Round(time.Millisecond))
		return nil
	case <-ctx.Done():
		stopWatch()
		return d.abortLive(ctx, s, src, done, log)
	}
}

// watchProgress logs a running migration's job statistics every jobPoll
// until ctx is done. A slow answer is given up by cancelling, not by a
// deadline: it says the domain is busy, not that the link is dead.
func watchProgress(ctx context.Context, src placement, log *slog.Logger) {
	ticker := time.NewTicker(jobPoll)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		pollCtx, cancel := context.WithCancel(ctx)
		stop := time.AfterFunc(jobPoll, cancel)
		params, err := query(pollCtx, src.host, "job stats", func(l *golibvirt.Libvirt) ([]golibvirt.TypedParam, error) {
			_, params, err := l.DomainGetJobStats(src.dom, 0)
			return params, err
		})
		stop.Stop()
		cancel()
		if err != nil {
			log.Debug("job stats unavailable", "err", err)
			continue
		}
		attrs := []any{}
		for _, p := range params {
			switch p.Field {
			case "time_elapsed", "data_total", "data_processed", "data_remaining", "memory_iteration":
				attrs = append(attrs, p.Field, p.Value.I)
			}
		}
		log.Debug("live migration progress", attrs...)
	}
}

// abortLive aborts the migration job after ctx is done and waits for the
// migration call to end, so that the caller knows where the domain is.
func (d *Driver) abortLive(ctx context.Context, s *session, src placement, done <-chan error, log *slog.Logger) error {
	sh := src.host
	cause := timeoutError(ctx, "live migration")
	actx, cancel := context.WithTimeout(context.Background(), min(abortTimeout, sh.callTimeout))
	err := sh.run(actx, s, "abort migration", func(l *golibvirt.Libvirt) error { return l.DomainAbortJob(src.dom) })
	cancel()
	if err != nil {
		log.Warn("abort of live migration failed", "err", err)
	}
	select {
	case perr := <-done:
		switch {
		case perr == nil:
			log.Warn("live migration completed before the abort took")
			return nil
		case connectionLost(perr):
			sh.drop(s, classify(perr))
			log.Warn("connection to the source lost while aborting live migration", "cause", cause, "err", perr)
			return fmt.Errorf("%w; connection to %s lost while aborting, outcome unknown (%v)", cause, sh.cfg.Name, perr)
		}
		log.Warn("live migration aborted, VM stays on source", "cause", cause, "err", perr)
		return fmt.Errorf("%w; aborted, VM stays on %s (%v)", cause, sh.cfg.Name, perr)
	case <-time.After(abortGrace):
		log.Warn("live migration abort requested, still ending")
		return fmt.Errorf("%w; abort requested, the migration job is still ending on %s", cause, sh.cfg.Name)
	}
}

// migrateOffline defines a shut-off domain on th from its persistent XML,
// then undefines it on its host; when that fails, the copy made on th is
// removed again.
func (d *Driver) migrateOffline(ctx context.Context, src placement, th *hostConn, wasOnTarget bool) error {
	sh, id := src.host, formatUUID(src.dom.UUID)
	doc, err := query(ctx, sh, "read definition", func(l *golibvirt.Libvirt) (string, error) {
		return l.DomainGetXMLDesc(src.dom, golibvirt.DomainXMLInactive|golibvirt.DomainXMLMigratable|golibvirt.DomainXMLSecure)
	})
	if err != nil {
		return fmt.Errorf("read definition on %s: %w", sh.cfg.Name, err)
	}
	dom, err := query(ctx, th, "define", func(l *golibvirt.Libvirt) (golibvirt.Domain, error) {
		return l.DomainDefineXML(doc)
	})
	if err != nil {
		return fmt.Errorf("define on %s: %w", th.cfg.Name, err)
	}
	err = sh.call(ctx, "undefine", func(l *golibvirt.Libvirt) error {
		return l.DomainUndefineFlags(src.dom, offlineUndefineFlags)
	})
	if err != nil && !errors.Is(err, drivers.ErrNotFound) {
		if !wasOnTarget {
			rerr := th.call(context.WithoutCancel(ctx), "undo define", func(l *golibvirt.Libvirt) error {
				return l.DomainUndefineFlags(dom, offlineUndefineFlags)
			})
			if rerr != nil {
				d.log.Error("VM now defined on both hosts", "vm", id, "from", sh.cfg.Name, "to", th.cfg.Name, "err", rerr)
			}
		}
		return fmt.Errorf("undefine on %s: %w", sh.cfg.Name, err)
	}
	d.log.Info("offline migration done", "vm", id, "name", src.dom.Name, "from", sh.cfg.Name, "to", th.cfg.Name)
	return nil
}
