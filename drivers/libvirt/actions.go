package libvirt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/herd-project/herd/drivers"
)

const (
	// hardOffMargin is how long before ctx's deadline Shutdown gives up on
	// the guest and destroys the domain: QEMU may take seconds to exit on a
	// busy host, and a destroy cut short leaves the caller guessing.
	hardOffMargin = 5 * time.Second
	// defaultShutdownWait bounds a guest shutdown when ctx has no deadline.
	defaultShutdownWait = 5 * time.Minute
	// shutdownPoll is how often Shutdown checks the domain's state.
	shutdownPoll = 250 * time.Millisecond
	// recreateNames is how many names Recreate tries (name, name-r1, …)
	// when the name is taken on the host.
	recreateNames = 4
	// undefineFlags remove what libvirt keeps beside a definition.
	undefineFlags = golibvirt.DomainUndefineManagedSave | golibvirt.DomainUndefineSnapshotsMetadata |
		golibvirt.DomainUndefineCheckpointsMetadata | golibvirt.DomainUndefineNvram
)

// PowerOn starts a shut-off domain or resumes a paused one; a running one
// is left as it is.
func (d *Driver) PowerOn(ctx context.Context, id string) error {
	p, err := d.locateOne(ctx, id)
	if err != nil {
		return fmt.Errorf("power on %s: %w", id, err)
	}
	return d.powerOn(ctx, p)
}

// PowerOnAt is PowerOn of the copy of id on host: a recovered VM has the
// same UUID as the stale copy its fenced host may still hold.
func (d *Driver) PowerOnAt(ctx context.Context, id, host string) error {
	h, err := d.host(host)
	if err != nil {
		return fmt.Errorf("power on %s on %s: %w", id, host, err)
	}
	p, err := locateOn(ctx, h, id)
	if err != nil {
		return fmt.Errorf("power on %s on %s: %w", id, host, err)
	}
	return d.powerOn(ctx, p)
}

func (d *Driver) powerOn(ctx context.Context, p placement) error {
	id := formatUUID(p.dom.UUID)
	err := p.host.call(ctx, "power on "+id, func(l *golibvirt.Libvirt) error {
		switch p.state {
		case golibvirt.DomainShutoff, golibvirt.DomainCrashed:
			return l.DomainCreate(p.dom)
		case golibvirt.DomainPaused:
			return l.DomainResume(p.dom)
		}
		return nil
	})
	if err != nil && !hasCode(err, golibvirt.ErrOperationInvalid) {
		return fmt.Errorf("power on %s on %s: %w", id, p.host.cfg.Name, err)
	}
	d.log.Info("VM powered on", "vm", id, "host", p.host.cfg.Name)
	return nil
}

// SetAutostart turns the host's start of VM id at boot on or off.
func (d *Driver) SetAutostart(ctx context.Context, id string, on bool) error {
	p, err := d.locateOne(ctx, id)
	if err != nil {
		return fmt.Errorf("set autostart of %s: %w", id, err)
	}
	flag := int32(0)
	if on {
		flag = 1
	}
	err = p.host.call(ctx, "set autostart of "+id, func(l *golibvirt.Libvirt) error {
		return l.DomainSetAutostart(p.dom, flag)
	})
	if err != nil {
		return fmt.Errorf("set autostart of %s on %s: %w", id, p.host.cfg.Name, err)
	}
	d.log.Info("VM autostart set", "vm", id, "host", p.host.cfg.Name, "autostart", on)
	return nil
}

// PowerOff destroys (stops at once) a running domain; a shut-off one is
// left as it is.
func (d *Driver) PowerOff(ctx context.Context, id string) error {
	p, err := d.locateOne(ctx, id)
	if err != nil {
		return fmt.Errorf("power off %s: %w", id, err)
	}
	if err := d.powerOff(ctx, p); err != nil {
		return fmt.Errorf("power off %s on %s: %w", id, p.host.cfg.Name, err)
	}
	return nil
}

func (d *Driver) powerOff(ctx context.Context, p placement) error {
	if !p.active() {
		return nil
	}
	err := p.host.call(ctx, "destroy", func(l *golibvirt.Libvirt) error { return l.DomainDestroy(p.dom) })
	if err != nil && !hasCode(err, golibvirt.ErrOperationInvalid) {
		return err
	}
	d.log.Info("VM powered off", "vm", formatUUID(p.dom.UUID), "host", p.host.cfg.Name)
	return nil
}

// Shutdown asks the guest to shut down (ACPI) and waits until the domain is
// off. It destroys the domain when ctx's deadline (or
// defaultShutdownWait) is within hardOffMargin, or when the guest cannot be
// asked.
func (d *Driver) Shutdown(ctx context.Context, id string) error {
	fail := func(err error) error { return fmt.Errorf("shut down %s: %w", id, err) }
	p, err := d.locateOne(ctx, id)
	if err != nil {
		return fail(err)
	}
	if !p.active() {
		return nil
	}
	err = drivers.GracefulShutdown{
		Wait: defaultShutdownWait, Margin: hardOffMargin, Poll: shutdownPoll,
		Log: d.log.With("vm", id, "host", p.host.cfg.Name), HardOff: "destroying",
		Ask: func(ctx context.Context) error {
			return p.host.call(ctx, "shutdown", func(l *golibvirt.Libvirt) error { return l.DomainShutdown(p.dom) })
		},
		AskFailed: func(err error) (bool, error) {
			switch {
			case hasCode(err, golibvirt.ErrOperationInvalid):
				return true, nil // no longer running
			case ctx.Err() != nil || errors.Is(err, drivers.ErrNotFound) || errors.Is(err, drivers.ErrUnreachable):
				return false, err
			}
			return false, nil
		},
		IsOff: func(ctx context.Context) (bool, error) {
			state, err := query(ctx, p.host, "state", func(l *golibvirt.Libvirt) (int32, error) {
				state, _, err := l.DomainGetState(p.dom, 0)
				return state, err
			})
			return err == nil && !(placement{state: golibvirt.DomainState(state)}).active(), err
		},
		Canceled: func(ctx context.Context) error { return timeoutError(ctx, "wait for shutdown") },
		PowerOff: func(ctx context.Context) error { return d.powerOff(ctx, p) },
	}.Run(ctx)
	if err != nil {
		return fail(err)
	}
	return nil
}

// Recreate defines a shut-off domain on host from a Definition that
// Inventory produced and returns its ID. The domain keeps its identity: the
// same UUID (libvirtd on another host accepts it), so the same SMBIOS
// system UUID, the same name and MAC addresses — a guest boots as the same
// machine. Only when another domain already has its name on host is it
// named name-r1, name-r2…; a domain of the same UUID there (an earlier
// attempt) is defined again.
func (d *Driver) Recreate(ctx context.Context, definition []byte, host string) (string, error) {
	fail := func(err error) error { return fmt.Errorf("recreate VM on %s: %w", host, err) }
	h, err := d.host(host)
	if err != nil {
		return "", fail(err)
	}
	ident, err := readIdentity(definition)
	if err != nil {
		return "", fail(err)
	}
	doc := definition
	for i := range recreateNames {
		name := ident.Name
		if i > 0 {
			name = fmt.Sprintf("%s-r%d", ident.Name, i)
			if doc, err = withName(doc, name); err != nil {
				return "", fail(err)
			}
		}
		dom, err := query(ctx, h, "define "+name, func(l *golibvirt.Libvirt) (golibvirt.Domain, error) {
			return l.DomainDefineXML(string(doc))
		})
		if nameTaken(err) {
			d.log.Warn("domain name taken by another domain, trying another", "host", host, "name", name, "err", err)
			continue
		}
		if err != nil {
			return "", fail(fmt.Errorf("define %s: %w", name, err))
		}
		id := formatUUID(dom.UUID)
		d.log.Info("recreated VM", "vm", id, "name", name, "host", host)
		return id, nil
	}
	return "", fail(fmt.Errorf("names %s to %s-r%d are all taken", ident.Name, ident.Name, recreateNames-1))
}

// nameTaken reports whether a definition failed because another domain
// has its name.
func nameTaken(err error) bool {
	var lerr golibvirt.Error
	if !errors.As(err, &lerr) {
		return false
	}
	code := golibvirt.ErrorNumber(lerr.Code)
	return code == golibvirt.ErrDomExist || (code == golibvirt.ErrOperationFailed && strings.Contains(lerr.Message, "already exists"))
}

// Destroy stops the domain id on host if it runs and undefines it with its
// managed save, snapshot and checkpoint metadata and NVRAM. Copies of the
// same UUID on other hosts (the recovered VM) are not touched.
func (d *Driver) Destroy(ctx context.Context, id, host string) error {
	fail := func(err error) error { return fmt.Errorf("destroy %s on %s: %w", id, host, err) }
	h, err := d.host(host)
	if err != nil {
		return fail(err)
	}
	p, err := locateOn(ctx, h, id)
	if err != nil {
		return fail(err)
	}
	if err := d.powerOff(ctx, p); err != nil {
		return fail(err)
	}
	err = p.host.call(ctx, "undefine", func(l *golibvirt.Libvirt) error {
		err := l.DomainUndefineFlags(p.dom, undefineFlags)
		if hasCode(err, golibvirt.ErrInvalidArg) || hasCode(err, golibvirt.ErrNoSupport) || hasCode(err, golibvirt.ErrArgumentUnsupported) {
			err = l.DomainUndefineFlags(p.dom, 0)
		}
		return err
	})
	// A transient domain is gone once destroyed.
	if err != nil && !errors.Is(err, drivers.ErrNotFound) && !hasCode(err, golibvirt.ErrOperationInvalid) {
		return fail(fmt.Errorf("undefine on %s: %w", p.host.cfg.Name, err))
	}
	d.log.Info("destroyed VM", "vm", id, "host", host)
	return nil
}
