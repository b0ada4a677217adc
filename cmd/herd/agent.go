package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/herd-project/herd/daemon/agent"
	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/daemon/config"
)

func newAgentCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the agent of a hypervisor host: gossip, host health, the lease and self-fencing",
		Long: `Run on each hypervisor host (herd-agent.service). The agent joins the
servers' gossip pool, reports whether the local hypervisor answers, and holds
a lease from the servers. When it cannot renew the lease for its TTL it
powers off the host's VMs, so that the servers may recreate them elsewhere.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAgent(file, g.stderr)
		},
	}
	cmd.Flags().StringVar(&file, "config", config.DefaultAgentConfigFile, "agent configuration file")
	return cmd
}

func runAgent(file string, stderr io.Writer) error {
	cfg, err := config.LoadAgent(file)
	if err != nil {
		return usageError{err}
	}
	log := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	notify := newNotifier(log)
	a, err := agent.New(cfg, agent.Options{Logger: log, Notify: notify.send, Watchdog: 2 * notify.every})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return a.Run(ctx)
}

// addDevHostCmds adds herd host crash|restore: a dev-mode simulator host
// stops answering, or answers again.
func addDevHostCmds(host *cobra.Command, g *globals) {
	for _, crash := range []bool{true, false} {
		use, short, done := "restore HOST", "Dev mode: a crashed simulator host answers again", "answers again"
		if crash {
			use, short, done = "crash HOST", "Dev mode: a simulator host stops answering, as if it crashed", "stops answering: watch it go suspect, dead, fenced (herd host ls, herd op ls)"
		}
		host.AddCommand(&cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return write(g, func(cx context.Context, c *api.Client) error {
					if err := c.DevHost(cx, args[0], crash); err != nil {
						return err
					}
					fmt.Fprintf(g.stdout, "Host %s %s\n", args[0], done)
					return nil
				})
			},
		})
	}
}
