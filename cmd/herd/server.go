package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"github.com/herd-project/herd/daemon"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
)

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// serverFlags are parsed by the standard flag package, so the daemon takes
// the single-dash flags operators of Consul and Nomad type (-dev,
// -bootstrap-expect 3); double dashes work too.
type serverFlags struct {
	config          string
	dev             bool
	devHosts        int
	devVMs          int
	devAPI          string
	devRaft         string
	nodeName        string
	dataDir         string
	bootstrapExpect int
	join            stringList
}

func newServerCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:                "server [flags]",
		Short:              "Run a Herd server (raft voter, API, controllers); -dev for a laptop",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServer(args, g.stdout, g.stderr)
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "leave",
		Short: "Take the server at --address out of the raft cluster; it stops afterwards",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return write(g, func(cx context.Context, c *api.Client) error {
				res, err := c.Leave(cx)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "Server %s left the cluster and is stopping.\n", res.Left)
				return nil
			})
		},
	}, &cobra.Command{
		Use:   "remove ID",
		Short: "Take a server (a dead one, typically) out of the raft cluster",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return write(g, func(cx context.Context, c *api.Client) error {
				if err := c.RemoveServer(cx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "Server %s removed from the cluster.\n", esc(args[0]))
				return nil
			})
		},
	})
	return cmd
}

func parseServerFlags(args []string, stderr io.Writer) (*serverFlags, error) {
	f := &serverFlags{}
	fs := flag.NewFlagSet("herd server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", config.DefaultConfigFile, "node config file")
	fs.BoolVar(&f.dev, "dev", false, "single node with an embedded vSphere simulator, state in a temp dir, no auth, loopback only")
	fs.IntVar(&f.devHosts, "dev-hosts", 4, "simulator hosts in -dev mode")
	fs.IntVar(&f.devVMs, "dev-vms", 32, "simulator VMs in -dev mode")
	fs.StringVar(&f.devAPI, "dev-api", "127.0.0.1:7420", "API listen address in -dev mode (loopback)")
	fs.StringVar(&f.devRaft, "dev-raft", "127.0.0.1:7421", "raft listen address in -dev mode (loopback)")
	fs.StringVar(&f.nodeName, "node-name", "", "override node_name")
	fs.StringVar(&f.dataDir, "data-dir", "", "override data_dir")
	fs.IntVar(&f.bootstrapExpect, "bootstrap-expect", -1, "override raft.bootstrap_expect")
	fs.Var(&f.join, "join", "API address of a server to join (repeatable, or comma-separated)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, exitErr(exitOK)
		}
		return nil, exitErr(exitUsage) // flag already printed the error and usage
	}
	if fs.NArg() > 0 {
		return nil, usagef("server: unexpected argument %q", fs.Arg(0))
	}
	if f.dev {
		for _, a := range []string{f.devAPI, f.devRaft} {
			if !isLoopback(a) {
				return nil, usagef("server: -dev listens on loopback only, not %q", a)
			}
		}
	}
	return f, nil
}

func runServer(args []string, stdout, stderr io.Writer) error {
	f, err := parseServerFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var srv *daemon.Server
	if f.dev {
		dev, err := daemon.NewDevServer(daemon.DevOptions{Hosts: f.devHosts, VMs: f.devVMs, APIListen: f.devAPI, RaftListen: f.devRaft, DataDir: f.dataDir}, daemon.Options{Logger: log})
		if err != nil {
			return usageError{err}
		}
		srv = dev.Server
		fmt.Fprint(stdout, dev.Banner())
	} else {
		cfg, err := config.LoadServer(f.config, func(c *config.Server) {
			if f.nodeName != "" {
				c.NodeName = f.nodeName
			}
			if f.dataDir != "" {
				c.DataDir = f.dataDir
			}
			if f.bootstrapExpect >= 0 {
				c.Raft.BootstrapExpect = f.bootstrapExpect
			}
			if len(f.join) > 0 {
				c.Raft.Join = f.join
			}
		})
		if err != nil {
			return usageError{err}
		}
		log = newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
		srv, err = daemon.NewServer(cfg, daemon.Options{Logger: log})
		if err != nil {
			return err
		}
	}
	if err := srv.Start(); err != nil {
		return err
	}
	// Raft is open and the API listens: systemd may start what depends on us.
	notify := newNotifier(log)
	notify.send(sddaemon.SdNotifyReady)
	watchdog, stopWatchdog := notify.ticks()
	defer stopWatchdog()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
loop:
	for {
		select {
		case <-watchdog:
			notify.send(sddaemon.SdNotifyWatchdog)
		case <-srv.Left():
			log.Info("left the cluster: shutting down")
			break loop
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				log.Info("SIGHUP: reloading the policy file")
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				if err := srv.ReloadPolicy(ctx); err != nil {
					log.Error("policy reload refused", "err", err)
				}
				cancel()
				continue
			}
			log.Info("shutting down", "signal", sig.String())
			break loop
		}
	}
	notify.send(sddaemon.SdNotifyStopping)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// isLoopback reports whether addr (host:port, or a bare host) is a
// loopback address only: localhost, 127.0.0.0/8 or ::1.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = strings.Trim(addr, "[]")
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
