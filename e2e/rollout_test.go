//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/internal/testutil"
)

// powerSwitch power-cycles bed hosts on request, as a rollout hook asks it
// to (curl from the leader's namespace to the bridge address): off (every
// process of the host's namespace killed), a moment down, then on again.
type powerSwitch struct {
	b      *Bed
	url    string
	srv    *http.Server
	mu     sync.Mutex
	off    string // the host powered off now
	cycles map[string]int
}

func newPowerSwitch(t *testing.T, b *Bed) *powerSwitch {
	ln, err := net.Listen("tcp", subnet+".1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &powerSwitch{b: b, url: "http://" + ln.Addr().String(), cycles: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /power-cycle/{host}", func(w http.ResponseWriter, r *http.Request) {
		var h *member
		for _, m := range b.Hosts {
			if m.name == r.PathValue("host") {
				h = m
			}
		}
		if h == nil {
			http.Error(w, "no such host", http.StatusNotFound)
			return
		}
		p.mu.Lock()
		p.off = h.name
		p.mu.Unlock()
		b.PowerOff(h)
		time.Sleep(3 * time.Second) // down for longer than suspect_after
		b.PowerOn(h)
		p.mu.Lock()
		p.off = ""
		p.cycles[h.name]++
		p.mu.Unlock()
		fmt.Fprintf(w, "host %s power-cycled\n", h.name)
	})
	p.srv = &http.Server{Handler: mux}
	go p.srv.Serve(ln)
	t.Cleanup(func() { p.srv.Close() })
	return p
}

func (p *powerSwitch) offNow() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.off
}

// upWatcher checks, four times a second, that each of vms is active
// (running, or paused as a live migration hands it over) on some host. A
// sample in which a host other than the one powered off does not answer
// proves nothing and is not counted.
type upWatcher struct {
	mu                    sync.Mutex
	down                  []string
	samples, inconclusive int
	stop, done            chan struct{}
}

func watchUp(b *Bed, vms []string, off func() string) *upWatcher {
	u := &upWatcher{stop: make(chan struct{}), done: make(chan struct{})}
	sample(u.stop, u.done, func() {
		cut := off()
		active := map[string]bool{}
		ok := true
		for _, h := range b.Hosts {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			out, err := exec.CommandContext(ctx, "virsh", "-c", "qemu+tcp://"+h.ip+":16509/system", "list", "--name").Output()
			cancel()
			if err != nil {
				ok = ok && h.name == cut
				continue
			}
			for _, n := range strings.Fields(string(out)) {
				active[n] = true
			}
		}
		u.mu.Lock()
		if !ok {
			u.inconclusive++
		} else {
			u.samples++
			for _, vm := range vms {
				if !active[vm] {
					u.down = append(u.down, fmt.Sprintf("%s: VM %s runs on no host", time.Now().Format("15:04:05.000"), vm))
				}
			}
		}
		u.mu.Unlock()
	})
	return u
}

func (u *upWatcher) close() {
	close(u.stop)
	<-u.done
}

// runningNames lists the VMs running on any host.
func runningNames(b *Bed) []string {
	var out []string
	for _, vms := range b.Domains(false) {
		for name := range vms {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// rolloutPowerCycle: a rollout across the three hosts, one at a time,
// whose hook powers each host off and on again for real. Every host
// passes and ends AVAILABLE with maintenance off; no VM runs on two hosts
// and no running VM is ever down (its live migrations hand it over); the
// hosts going down are neither fenced nor recovered.
func rolloutPowerCycle(t *testing.T, b *Bed, w *watcher) {
	ctx := context.Background()
	c := b.Client()
	for i, h := range b.Hosts {
		b.Define(h.name, fmt.Sprintf("r%d", i+1), true)
	}
	testutil.WaitFor(t, 60*time.Second, "the rollout VMs running and known", func() bool {
		vms, err := c.VMs(ctx, "")
		n := 0
		for _, v := range vms {
			if strings.HasPrefix(v.Name, "r") && v.Power == api.PoweredOn {
				n++
			}
		}
		return err == nil && n == len(b.Hosts)
	})
	sw := newPowerSwitch(t, b)
	pol := policyYAMLFor(b) + fmt.Sprintf("rollout:\n  hooks:\n    - name: power-cycle\n      command: [/usr/bin/curl, -fsS, -X, POST, \"%s/power-cycle/{host}\"]\n      timeout: 3m\n", sw.url)
	if _, err := c.ApplyPolicy(ctx, []byte(pol), "e2e"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := c.ApplyPolicy(ctx, []byte(policyYAMLFor(b)), "e2e"); err != nil {
			t.Errorf("restore the policy: %v", err)
		}
	}()
	before := runningNames(b)
	up := watchUp(b, before, sw.offNow)
	start := time.Now()
	defer dumpEvents(t, b, start)
	r, err := c.StartRollout(ctx, api.RolloutRequest{All: true, Order: "listed", Hook: "power-cycle", Migrate: "active-only"})
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 6*time.Minute, "the rollout to end", func() bool {
		got, err := c.Rollout(ctx, r.ID)
		if err == nil {
			r = got
		}
		return err == nil && (r.State == "succeeded" || r.State == "failed" || r.State == "cancelled")
	})
	took := time.Since(start)
	up.close()
	if r.State != "succeeded" {
		t.Errorf("rollout %s: %s (%s)", r.ID, r.State, r.Error)
	}
	for _, h := range r.Hosts {
		if h.Phase != "done" {
			t.Errorf("host %s ended %s: %s", h.Host, h.Phase, h.Error)
		}
	}
	sw.mu.Lock()
	for _, h := range b.Hosts {
		if sw.cycles[h.name] != 1 {
			t.Errorf("host %s was power-cycled %d times, want once", h.name, sw.cycles[h.name])
		}
	}
	sw.mu.Unlock()
	testutil.WaitFor(t, 60*time.Second, "every host available, alive, maintenance off", func() bool {
		hs, err := c.Hosts(ctx)
		if err != nil || len(hs) != len(b.Hosts) {
			return false
		}
		for _, h := range hs {
			if h.Admin != api.Available || h.Maintenance != api.MaintenanceOff || h.Health != api.HealthAlive {
				return false
			}
		}
		return true
	})
	seen := map[string]bool{}
	for _, e := range events(t, b, start, "") {
		switch e.Type {
		case "host.fenced", "recovery.started", "host.fencing_failed":
			t.Errorf("a host in its rollout work was fenced or recovered: %s %s", e.Type, e.Message)
		case "host.health":
			seen[e.Host] = true
		}
	}
	for _, h := range b.Hosts {
		if !seen[h.name] {
			t.Errorf("Herd never saw host %s's health change: was it really powered off?", h.name)
		}
	}
	if after := runningNames(b); !slices.Equal(after, before) {
		t.Errorf("running VMs before the rollout %v, after %v", before, after)
	}
	up.mu.Lock()
	for _, d := range up.down {
		t.Errorf("VM down during the rollout: %s", d)
	}
	t.Logf("VMs checked up in %d samples (%d inconclusive: a host not answering)", up.samples, up.inconclusive)
	if up.samples < 20 {
		t.Errorf("only %d conclusive samples of the VMs being up", up.samples)
	}
	up.mu.Unlock()
	w.check(t)
	record(t, map[string]time.Duration{"rollout": took})
}
