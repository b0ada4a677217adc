package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/herd-project/herd/daemon/config"
	"github.com/herd-project/herd/daemon/policysource"
	"github.com/herd-project/herd/drivers"
	"github.com/herd-project/herd/drivers/vsphere"
	"github.com/herd-project/herd/policy"
)

// DevOptions configures `herd server -dev`.
type DevOptions struct {
	Hosts int
	VMs   int
	// API and Raft listen addresses; loopback only.
	APIListen  string
	RaftListen string
	// DataDir; a new temporary directory when empty.
	DataDir string
	// MethodDelay slows simulator SOAP methods (milliseconds), so that
	// migrations take time as they do on real hosts.
	MethodDelay map[string]int
	// Configure changes the generated config before it is validated.
	Configure func(*config.Server)
	// Policy changes the default policy dev mode writes to its policy file.
	Policy func(*policy.Document)
	// HostMemoryGiB sizes the simulated hosts (256 when zero).
	HostMemoryGiB int
}

// Validate names the bad flag.
func (o DevOptions) Validate() error {
	if o.Hosts < 1 || o.Hosts > 500 {
		return fmt.Errorf("-dev-hosts: %d is out of range (1 to 500)", o.Hosts)
	}
	if o.VMs < 0 || o.VMs > 20000 {
		return fmt.Errorf("-dev-vms: %d is out of range (0 to 20000)", o.VMs)
	}
	return nil
}

// DevServer is a single-node server over an embedded vSphere simulator.
type DevServer struct {
	*Server
	Sim     *vsphere.Simulator
	tempDir string
}

// NewDevServer starts the simulator and builds a single-node server that
// syncs it through the vSphere driver over the simulator's real SOAP API.
func NewDevServer(o DevOptions, opts Options) (*DevServer, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	cfg := config.DefaultServer()
	cfg.Dev = true
	cfg.NodeName = "dev"
	cfg.API.Listen = o.APIListen
	cfg.Raft.Listen = o.RaftListen
	cfg.Raft.BootstrapExpect = 1
	cfg.Gossip.Listen = "127.0.0.1:0"
	cfg.Inventory.SyncInterval = 2 * time.Second
	var temp string
	if o.DataDir == "" {
		d, err := os.MkdirTemp("", "herd-dev-")
		if err != nil {
			return nil, fmt.Errorf("dev data dir: %w", err)
		}
		temp, o.DataDir = d, d
	}
	cfg.DataDir = o.DataDir
	cfg.PolicyFile = filepath.Join(o.DataDir, "policy.yaml")
	if err := os.MkdirAll(o.DataDir, 0o750); err != nil {
		os.RemoveAll(temp)
		return nil, fmt.Errorf("dev data dir: %w", err)
	}
	if err := writeDevPolicy(cfg.PolicyFile, o.Policy); err != nil {
		os.RemoveAll(temp)
		return nil, err
	}

	sim, err := vsphere.StartSimulator(vsphere.SimConfig{Hosts: o.Hosts, VMs: o.VMs, MethodDelay: o.MethodDelay, HostMemoryGiB: o.HostMemoryGiB})
	if err != nil {
		os.RemoveAll(temp)
		return nil, fmt.Errorf("start vSphere simulator: %w", err)
	}
	vc := sim.Config()
	cfg.Drivers = []config.Driver{{Name: "dev", Type: "vsphere", URL: vc.URL, Username: vc.Username, Insecure: true, Password: vc.Password}}
	if o.Configure != nil {
		o.Configure(cfg)
	}
	if err := cfg.Validate(nil); err != nil {
		sim.Close()
		os.RemoveAll(temp)
		return nil, err
	}
	s, err := NewServer(cfg, opts)
	if err != nil {
		sim.Close()
		os.RemoveAll(temp)
		return nil, err
	}
	s.devFence = func(host string) error {
		n, err := sim.PowerOffHost(host)
		if err != nil {
			return err
		}
		s.log.Info("dev fence: simulator host powered off", "host", host, "vms_stopped", n)
		return nil
	}
	s.devCrash = func(host string, crash bool) error {
		state := drivers.Connected
		if crash {
			state = drivers.NotResponding
		}
		return sim.SetHostConnection(host, state)
	}
	s.onClose = append(s.onClose, sim.Close, func() {
		if temp != "" {
			os.RemoveAll(temp)
		}
	})
	return &DevServer{Server: s, Sim: sim, tempDir: temp}, nil
}

// Banner tells a person where things are.
func (d *DevServer) Banner() string {
	return fmt.Sprintf(`Herd is running in dev mode (single node, no auth, state in %s).
  API and metrics:  %s   (%s/metrics)
  vSphere simulator: %s  (%d hosts)

Try it from another terminal:
  export HERD_ADDR=%s
  herd host ls
  herd vm ls
  herd cluster
  herd events --since 10m
  herd host maintenance enable %s --migrate all --wait
  herd host crash %s     (then: herd host ls; herd op ls; herd host restore %s)
  herd policy show   (edit %s: it reloads when it changes)

Three servers instead of one, to kill a leader and watch: herd dev-cluster (make dev-cluster).

Stop with Ctrl-C.
`, d.cfg.DataDir, d.apiAddr, d.apiAddr, d.Sim.Config().URL, len(d.Sim.HostNames()), d.apiAddr, d.Sim.HostNames()[0], d.Sim.HostNames()[len(d.Sim.HostNames())-1], d.Sim.HostNames()[len(d.Sim.HostNames())-1], d.cfg.PolicyFile)
}

// writeDevPolicy writes the default policy, changed by edit, where dev mode
// reads its policy file.
func writeDevPolicy(path string, edit func(*policy.Document)) error {
	doc := policysource.Default()
	// On a laptop a crash should be seen in seconds, and fenced by the
	// simulator's power switch (then an agent's lease, if one runs).
	doc.Health = policy.HealthPolicy{SuspectAfter: time.Second, DeadAfter: 3 * time.Second, AliveAfter: 3 * time.Second}
	doc.Recovery.Fencing = []policy.FenceMethod{{Name: "simulator", Type: policy.FenceDev}, {Name: "lease", Type: policy.FenceLease}}
	if edit != nil {
		edit(doc)
	}
	y, err := doc.YAML()
	if err != nil {
		return fmt.Errorf("dev policy: %w", err)
	}
	if _, err := policy.Parse(path, y); err != nil {
		return fmt.Errorf("dev policy: %w", err)
	}
	if err := os.WriteFile(path, y, 0o644); err != nil {
		return fmt.Errorf("dev policy: %w", err)
	}
	return nil
}

// devHosts are dev mode's simulated hosts (s.devCrash is set after the
// routes are built).
type devHosts struct{ s *Server }

func (d devHosts) Enabled() bool { return d.s.devCrash != nil }

func (d devHosts) Crash(host string, crash bool) error { return d.s.devCrash(host, crash) }

func (d devHosts) Reboot(host string, down time.Duration) error {
	s := d.s
	if err := s.devCrash(host, true); err != nil {
		return err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-time.After(down):
		case <-s.ctx.Done():
		}
		if err := s.devCrash(host, false); err != nil {
			s.log.Warn("dev reboot: host does not come back", "host", host, "err", err)
		}
	}()
	return nil
}
