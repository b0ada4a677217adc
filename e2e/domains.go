//go:build e2e

package e2e

import (
	"errors"
	"net"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"

	"github.com/herd-project/herd/drivers"
)

// lister asks the hosts' libvirtd which domains they have, over one
// connection per host that it keeps open: the watcher samples four times
// a second, and a virsh process per host and sample cost the machine a
// quarter of a core, taken from the bed it watches.
type lister struct {
	mu    sync.Mutex
	conns map[string]*golibvirt.Libvirt // by address
	raw   map[string]net.Conn
}

// list returns the names of addr's domains: all of them (all) or the
// running ones. An error or no answer by deadline closes the connection
// and returns false; a connection that had gone stale (its host rebooted)
// is replaced once.
func (ls *lister) list(addr string, all bool, deadline time.Time) ([]string, bool) {
	for range 2 {
		l, fresh, err := ls.conn(addr, deadline)
		if err != nil {
			return nil, false
		}
		names, err := ls.call(addr, l, all, deadline)
		if err == nil {
			return names, true
		}
		if fresh || time.Now().After(deadline) {
			return nil, false
		}
	}
	return nil, false
}

// conn is the open connection to addr, or a new one (fresh).
func (ls *lister) conn(addr string, deadline time.Time) (*golibvirt.Libvirt, bool, error) {
	ls.mu.Lock()
	l := ls.conns[addr]
	ls.mu.Unlock()
	if l != nil {
		return l, false, nil
	}
	c, err := net.DialTimeout("tcp", addr, time.Until(deadline))
	if err != nil {
		return nil, true, err
	}
	l = golibvirt.NewWithDialer(dialers.NewAlreadyConnected(c))
	done := make(chan error, 1)
	go func() { done <- l.ConnectToURI(golibvirt.QEMUSystem) }()
	select {
	case err = <-done:
	case <-time.After(time.Until(deadline)):
		err = errors.New("no answer")
	}
	if err != nil {
		c.Close()
		return nil, true, err
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if other := ls.conns[addr]; other != nil {
		// Another caller connected meanwhile: use one connection.
		c.Close()
		return other, false, nil
	}
	if ls.conns == nil {
		ls.conns, ls.raw = map[string]*golibvirt.Libvirt{}, map[string]net.Conn{}
	}
	ls.conns[addr], ls.raw[addr] = l, c
	return l, true, nil
}

// call lists the domains on l, closing it on an error or at deadline
// (which ends an RPC a silent host would never answer).
func (ls *lister) call(addr string, l *golibvirt.Libvirt, all bool, deadline time.Time) ([]string, error) {
	flags := golibvirt.ConnectListDomainsRunning
	if all {
		flags = golibvirt.ConnectListDomainsActive | golibvirt.ConnectListDomainsInactive
	}
	type result struct {
		doms []golibvirt.Domain
		err  error
	}
	done := make(chan result, 1)
	go func() {
		doms, _, err := l.ConnectListAllDomains(1, flags)
		done <- result{doms, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Until(deadline)):
		r.err = errors.New("no answer")
	}
	if r.err != nil {
		ls.drop(addr, l)
		return nil, r.err
	}
	names := make([]string, len(r.doms))
	for i, d := range r.doms {
		names[i] = d.Name
	}
	return names, nil
}

// drop closes l if it is still addr's connection.
func (ls *lister) drop(addr string, l *golibvirt.Libvirt) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.conns[addr] != l {
		return
	}
	ls.raw[addr].Close()
	delete(ls.conns, addr)
	delete(ls.raw, addr)
}

// close closes every connection.
func (ls *lister) close() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for addr, c := range ls.raw {
		c.Close()
		delete(ls.conns, addr)
		delete(ls.raw, addr)
	}
}

// domainStates is what domainsOf reports: every name PoweredOff (all),
// then the running ones PoweredOn.
func domainStates(everything, running []string) map[string]drivers.PowerState {
	states := map[string]drivers.PowerState{}
	for _, n := range everything {
		states[n] = drivers.PoweredOff
	}
	for _, n := range running {
		states[n] = drivers.PoweredOn
	}
	return states
}
