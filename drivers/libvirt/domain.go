package libvirt

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/herd-project/herd/drivers"
)

// parseUUID reads a UUID in its usual text form.
func parseUUID(s string) (golibvirt.UUID, error) {
	var u golibvirt.UUID
	raw := strings.ReplaceAll(s, "-", "")
	if len(raw) != 2*len(u) {
		return u, fmt.Errorf("VM id %q is not a UUID: %w", s, drivers.ErrNotFound)
	}
	if _, err := hex.Decode(u[:], []byte(raw)); err != nil {
		return u, fmt.Errorf("VM id %q is not a UUID: %w", s, drivers.ErrNotFound)
	}
	return u, nil
}

// formatUUID writes a UUID as libvirt does.
func formatUUID(u golibvirt.UUID) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// placement is one copy of a domain on one host.
type placement struct {
	host   *hostConn
	dom    golibvirt.Domain
	state  golibvirt.DomainState
	reason int32
}

// inTransit says whether the copy is paused by a live migration: the
// incoming copy on a target, or the source in its last phase. Which of the
// two ends up running is decided when the migration ends.
func (p placement) inTransit() bool {
	r := golibvirt.DomainPausedReason(p.reason)
	return p.state == golibvirt.DomainPaused && (r == golibvirt.DomainPausedMigration || r == golibvirt.DomainPausedStartingUp)
}

func (p placement) active() bool {
	return p.state != golibvirt.DomainShutoff && p.state != golibvirt.DomainCrashed
}

// locate finds the copies of VM id on every host, in host order. It fails
// with ErrNotFound when no host has it, or ErrUnreachable when a host that
// could not be asked had it at its last inventory.
func (d *Driver) locate(ctx context.Context, id string) ([]placement, error) {
	uuid, err := parseUUID(id)
	if err != nil {
		return nil, err
	}
	found := make([]*placement, len(d.hosts))
	errs := make([]error, len(d.hosts))
	var wg sync.WaitGroup
	for i, h := range d.hosts {
		wg.Go(func() {
			p, err := queryConnected(ctx, h, "look up "+id, func(l *golibvirt.Libvirt) (*placement, error) {
				dom, err := l.DomainLookupByUUID(uuid)
				if err != nil {
					return nil, err
				}
				state, reason, err := l.DomainGetState(dom, 0)
				if err != nil {
					return nil, err
				}
				return &placement{host: h, dom: dom, state: golibvirt.DomainState(state), reason: reason}, nil
			})
			found[i] = p
			if err != nil && !errors.Is(err, drivers.ErrNotFound) {
				errs[i] = err
			}
		})
	}
	wg.Wait()
	var out []placement
	for _, p := range found {
		if p != nil {
			out = append(out, *p)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, timeoutError(ctx, "look up "+id)
	}
	for i, h := range d.hosts {
		if errs[i] != nil && h.cached(id) {
			return nil, fmt.Errorf("VM %s was on host %s: %w", id, h.cfg.Name, errs[i])
		}
	}
	return nil, fmt.Errorf("no VM with id %s: %w", id, errors.Join(append([]error{drivers.ErrNotFound}, errs...)...))
}

// locateOn finds the copy of VM id on host h.
func locateOn(ctx context.Context, h *hostConn, id string) (placement, error) {
	uuid, err := parseUUID(id)
	if err != nil {
		return placement{}, err
	}
	return query(ctx, h, "look up "+id, func(l *golibvirt.Libvirt) (placement, error) {
		dom, err := l.DomainLookupByUUID(uuid)
		if err != nil {
			return placement{}, err
		}
		state, reason, err := l.DomainGetState(dom, 0)
		if err != nil {
			return placement{}, err
		}
		return placement{host: h, dom: dom, state: golibvirt.DomainState(state), reason: reason}, nil
	})
}

// locateOne finds the one copy of VM id an action applies to: the only
// one, or the only active one among several.
func (d *Driver) locateOne(ctx context.Context, id string) (placement, error) {
	ps, err := d.locate(ctx, id)
	if err != nil {
		return placement{}, err
	}
	if len(ps) == 1 {
		return ps[0], nil
	}
	active := slices.DeleteFunc(slices.Clone(ps), func(p placement) bool { return !p.active() })
	if len(active) == 1 {
		return active[0], nil
	}
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.host.cfg.Name
	}
	return placement{}, fmt.Errorf("VM %s is defined on hosts %s (%d of them running): ambiguous", id, strings.Join(names, ", "), len(active))
}

// cached reports whether VM id was on h at its last inventory.
func (h *hostConn) cached(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.ContainsFunc(h.cache, func(vm drivers.VM) bool { return vm.ID == id })
}

// powerState maps a libvirt domain state.
func powerState(s golibvirt.DomainState) drivers.PowerState {
	switch s {
	case golibvirt.DomainShutoff, golibvirt.DomainCrashed:
		return drivers.PoweredOff
	case golibvirt.DomainPaused, golibvirt.DomainPmsuspended:
		return drivers.Suspended
	default:
		return drivers.PoweredOn
	}
}
