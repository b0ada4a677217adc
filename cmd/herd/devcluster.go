package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/drivers/vsphere"
)

// devCluster is `herd dev-cluster`: three `herd server` processes on
// loopback against one embedded vSphere simulator, so that anyone can kill
// a leader and watch the others take over.
type devCluster struct {
	hosts, vms int
	port       int
	dir        string
	herd       string
	stdout     io.Writer
	stderr     io.Writer
}

func newDevClusterCmd(g *globals) *cobra.Command {
	d := &devCluster{}
	cmd := &cobra.Command{
		Use:   "dev-cluster",
		Short: "Three herd servers on loopback over one vSphere simulator: try HA of Herd itself",
		Long: `Three herd server processes on loopback, each a raft voter, syncing one embedded
vSphere simulator. It prints where each server is and its process id: kill the
leader (kill -9 PID) and watch another take over with herd cluster. Ctrl-C stops
everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			d.stdout, d.stderr = g.stdout, g.stderr
			return d.run()
		},
	}
	cmd.Flags().IntVar(&d.hosts, "hosts", 4, "simulated hosts")
	cmd.Flags().IntVar(&d.vms, "vms", 16, "simulated VMs")
	cmd.Flags().IntVar(&d.port, "port", 7420, "first API port (the servers take three in a row; raft and gossip the next ten and twenty); 0 takes free ports")
	cmd.Flags().StringVar(&d.herd, "herd", "", "the herd binary the servers run (this one when empty)")
	cmd.Flags().StringVar(&d.dir, "dir", "", "state and configs (a new temporary directory when empty; removed at the end)")
	return cmd
}

// devServer is one child process.
type devServer struct {
	name, api, config, log string
	cmd                    *exec.Cmd
	exited                 chan struct{}
}

func (d *devCluster) run() error {
	if d.hosts < 1 || d.hosts > 500 {
		return usagef("--hosts: %d is out of range (1 to 500)", d.hosts)
	}
	if d.vms < 0 || d.vms > 20000 {
		return usagef("--vms: %d is out of range (0 to 20000)", d.vms)
	}
	if d.port != 0 && (d.port < 1024 || d.port > 65535-22) {
		return usagef("--port: %d is out of range (1024 to 65513, or 0)", d.port)
	}
	self, err := d.herd, error(nil)
	if self == "" {
		if self, err = os.Executable(); err != nil {
			return fmt.Errorf("dev-cluster: find the herd binary: %w", err)
		}
	}
	dir := d.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "herd-dev-cluster-"); err != nil {
			return fmt.Errorf("dev-cluster: %w", err)
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("dev-cluster --dir: %w", err)
	}
	sim, err := vsphere.StartSimulator(vsphere.SimConfig{Hosts: d.hosts, VMs: d.vms})
	if err != nil {
		return fmt.Errorf("dev-cluster: %w", err)
	}
	defer sim.Close()
	admin, servers, err := d.writeConfigs(dir, sim.Config())
	if err != nil {
		return err
	}
	for _, s := range servers {
		if err := s.start(self); err != nil {
			stopAll(servers)
			return err
		}
	}
	defer stopAll(servers)

	leader, err := waitFormed(servers, admin)
	if err != nil {
		return err
	}
	d.banner(self, dir, sim, admin, servers, leader)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	for {
		select {
		case <-sig:
			fmt.Fprintln(d.stdout, "\nStopping the three servers and the simulator.")
			return nil
		case <-time.After(500 * time.Millisecond):
		}
		for _, s := range servers {
			select {
			case <-s.exited:
				fmt.Fprintf(d.stdout, "%s (pid %d) exited. Start it again with:\n  %s server -config %s\n", s.name, s.cmd.Process.Pid, self, s.config)
				s.exited = nil // said once; a restarted process is the user's
			default:
			}
		}
	}
}

// writeConfigs writes tokens, a policy and one herd.yaml per server.
func (d *devCluster) writeConfigs(dir string, vc vsphere.Config) (admin string, servers []*devServer, err error) {
	write := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err == nil {
			err = os.WriteFile(p, []byte(data), mode)
		}
		return p
	}
	admin, server := randomToken(), randomToken()
	tokens := write("tokens.yaml", "tokens:\n  - name: admin\n    role: admin\n    token_file: "+write("admin.token", admin+"\n", 0o600)+"\n", 0o600)
	serverTok := write("server.token", server+"\n", 0o600)
	password := write("vsphere.password", vc.Password+"\n", 0o600)
	key := make([]byte, 32)
	if _, rerr := rand.Read(key); rerr != nil {
		return "", nil, fmt.Errorf("dev-cluster: gossip key: %w", rerr)
	}
	keyring := write("gossip.keyring", base64.StdEncoding.EncodeToString(key)+"\n", 0o600)
	policy := write("policy.yaml", "apiVersion: herd/v1\nkind: Policy\n", 0o644)
	ports, perr := d.ports()
	if perr != nil {
		return "", nil, perr
	}
	var apis []string
	for i := 0; i < 3; i++ {
		apis = append(apis, fmt.Sprintf("127.0.0.1:%d", ports[i]))
	}
	for i := 0; i < 3; i++ {
		var join, gossipJoin []string
		for j, a := range apis {
			if j != i {
				join = append(join, a)
				gossipJoin = append(gossipJoin, fmt.Sprintf("127.0.0.1:%d", ports[6+j]))
			}
		}
		name := fmt.Sprintf("s%d", i+1)
		cfg := fmt.Sprintf(`# herd dev-cluster: server %[1]s
node_name: %[1]s
data_dir: %[2]s
policy_file: %[3]s
api:
  listen: %[4]s
  tokens_file: %[5]s
  server_token_file: %[6]s
raft:
  listen: 127.0.0.1:%[7]d
  bootstrap_expect: 3
  join: [%[8]s]
gossip:
  listen: 127.0.0.1:%[9]d
  join: [%[10]s]
  keyring_file: %[14]s
  profile: local
inventory:
  sync_interval: 2s
drivers:
  - name: sim
    type: vsphere
    url: %[11]s
    username: %[12]s
    password_file: %[13]s
    insecure: true
log:
  level: warn
`, name, filepath.Join(dir, name), policy, apis[i], tokens, serverTok, ports[3+i], strings.Join(join, ", "),
			ports[6+i], strings.Join(gossipJoin, ", "), vc.URL, vc.Username, password, keyring)
		servers = append(servers, &devServer{name: name, api: "http://" + apis[i],
			config: write(name+".yaml", cfg, 0o600), log: filepath.Join(dir, name+".log")})
	}
	if err != nil {
		return "", nil, fmt.Errorf("dev-cluster: write configs: %w", err)
	}
	return admin, servers, nil
}

// ports are three API, three raft and three gossip ports: from --port, or
// free ones.
func (d *devCluster) ports() ([]int, error) {
	var out []int
	for _, off := range []int{0, 1, 2, 10, 11, 12, 20, 21, 22} {
		if d.port != 0 {
			out = append(out, d.port+off)
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("dev-cluster: find a free port: %w", err)
		}
		defer l.Close()
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, p := range out[:6] {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil && d.port != 0 {
			return nil, usagef("--port: 127.0.0.1:%d is taken (is herd server -dev or another dev-cluster running?); pick another with --port", p)
		}
		if err == nil {
			l.Close()
		}
	}
	return out, nil
}

func randomToken() string {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func (s *devServer) start(self string) error {
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("dev-cluster: %w", err)
	}
	cmd := exec.Command(self, "server", "-config", s.config)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("dev-cluster: start %s: %w", s.name, err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	exited := s.exited
	go func() {
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
	return nil
}

func stopAll(servers []*devServer) {
	for _, s := range servers {
		if s.cmd != nil && s.cmd.Process != nil {
			s.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(10 * time.Second)
	for _, s := range servers {
		if s.cmd == nil {
			continue
		}
		done := make(chan struct{})
		go func() { s.cmd.Process.Wait(); close(done) }()
		select {
		case <-done:
		case <-deadline:
			syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
}

// waitFormed waits until the three servers agree on a leader.
func waitFormed(servers []*devServer, token string) (string, error) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		leader, ok := "", true
		for _, s := range servers {
			select {
			case <-s.exited:
				return "", fmt.Errorf("dev-cluster: %s stopped while the cluster formed; its log: %s", s.name, s.log)
			default:
			}
			c, _ := api.NewClient(s.api, token)
			c.HTTP.Timeout = 2 * time.Second
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			cl, err := c.Cluster(ctx)
			cancel()
			if err != nil || cl.Leader == "" || len(cl.Servers) != 3 || leader != "" && cl.Leader != leader {
				ok = false
				break
			}
			leader = cl.Leader
		}
		if ok {
			return leader, nil
		}
		time.Sleep(300 * time.Millisecond)
	}
	return "", errors.New("dev-cluster: the three servers did not form a cluster within 60 s (see the logs in --dir)")
}

func (d *devCluster) banner(self, dir string, sim *vsphere.Simulator, token string, servers []*devServer, leader string) {
	w := d.stdout
	fmt.Fprintf(w, "Herd dev cluster: three servers on loopback, one vSphere simulator (%d hosts, %d VMs) at %s\n", len(sim.HostNames()), d.vms, sim.Config().URL)
	fmt.Fprintf(w, "State, configs and logs in %s\n\n", dir)
	var leaderPID int
	for _, s := range servers {
		role := "follower"
		if s.name == leader {
			role, leaderPID = "leader", s.cmd.Process.Pid
		}
		fmt.Fprintf(w, "  %s  %-24s pid %-7d %-8s log %s\n", s.name, s.api, s.cmd.Process.Pid, role, s.log)
	}
	other := servers[0]
	if other.name == leader {
		other = servers[1]
	}
	fmt.Fprintf(w, `
From another terminal:
  export HERD_ADDR=%s HERD_TOKEN=%s
  herd cluster                 (each server as the leader sees it)
  herd host ls

Try HA of Herd itself:
  kill -9 %d                 (the leader, %s)
  herd cluster --address %s    (another server leads within seconds; %s shows down)
  %s server -config %s   (start it again: it replays its log, then /readyz says ready)

Stop everything with Ctrl-C.
`, servers[0].api, token, leaderPID, leader, other.api, leader, self, filepath.Join(dir, leader+".yaml"))
}
