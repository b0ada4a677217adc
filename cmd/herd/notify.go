package main

import (
	"log/slog"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
)

// notifier speaks systemd's notify protocol (Type=notify): READY=1,
// WATCHDOG=1 and STOPPING=1. Without NOTIFY_SOCKET it does nothing.
type notifier struct {
	log *slog.Logger
	// every is how often to feed the watchdog: half of WATCHDOG_USEC, or
	// zero when systemd does not watch this process.
	every time.Duration
}

func newNotifier(log *slog.Logger) *notifier {
	n := &notifier{log: log}
	d, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog settings ignored", "err", err)
	}
	if d > 0 {
		n.every = d / 2
	}
	return n
}

func (n *notifier) send(state string) {
	if _, err := sddaemon.SdNotify(false, state); err != nil {
		n.log.Warn("systemd notify", "state", state, "err", err)
	}
}

// ticks is the watchdog's ticker channel; nil (never fires) without one.
func (n *notifier) ticks() (<-chan time.Time, func()) {
	if n.every <= 0 {
		return nil, func() {}
	}
	t := time.NewTicker(n.every)
	return t.C, t.Stop
}
