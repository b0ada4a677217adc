package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/daemon/api"
)

func addMaintenanceCmd(host *cobra.Command, g *globals) {
	m := &cobra.Command{Use: "maintenance", Short: "Put a host into maintenance and bring it back"}
	var migrate, target string
	var shutdown []string
	var wait, force bool
	enableFlags := func(c *cobra.Command) {
		c.Flags().StringVar(&migrate, "migrate", "none", "what moves: none (just close the host), active-only (running VMs live), all (stopped VMs offline too)")
		c.Flags().StringVar(&target, "target-host", "", "send every VM to this one host")
		c.Flags().StringSliceVar(&shutdown, "shutdown", nil, "VMs (names or ids) to shut down instead of moving (repeatable)")
	}
	precheck := &cobra.Command{
		Use:   "precheck HOST",
		Short: "Show what entering maintenance would do, and what blocks it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return read(g, func(cx context.Context, c *api.Client) (*api.Precheck, error) {
				return c.Precheck(cx, args[0], api.MaintenanceRequest{Status: "enable", Migrate: migrate, TargetHost: target, ShutdownVMs: shutdown})
			}, func(pc *api.Precheck) error { return printPrecheck(g.stdout, pc) })
		},
	}
	enableFlags(precheck)
	addOutput(precheck, g)

	enable := &cobra.Command{
		Use:   "enable HOST",
		Short: "Enter maintenance: close the host and, with --migrate, empty it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return startOperation(g, wait, "Host "+args[0]+" entering maintenance", func(cx context.Context, c *api.Client) (*api.OperationRef, error) {
				return c.Maintenance(cx, args[0], api.MaintenanceRequest{Status: "enable", Migrate: migrate, TargetHost: target, ShutdownVMs: shutdown, Force: force})
			})
		},
	}
	enableFlags(enable)
	enable.Flags().BoolVar(&wait, "wait", false, "follow the evacuation with a progress bar; exit 1 if the host ends in maintenance error")
	enable.Flags().BoolVar(&force, "force", false, "enter even when the failover capacity drops below the policy minimum")

	var powerOn, liveBack, offlineBack []string
	disable := &cobra.Command{
		Use:   "disable HOST",
		Short: "Leave maintenance; optionally power on and migrate back chosen VMs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return startOperation(g, wait, "Host "+args[0]+" leaving maintenance", func(cx context.Context, c *api.Client) (*api.OperationRef, error) {
				return c.Maintenance(cx, args[0], api.MaintenanceRequest{Status: "disable", PowerOnVMs: powerOn,
					LiveMigrateBackVMs: liveBack, OfflineMigrateBackVMs: offlineBack})
			})
		},
	}
	disable.Flags().StringSliceVar(&powerOn, "poweron", nil, "VMs shut down for the maintenance to power on again")
	disable.Flags().StringSliceVar(&liveBack, "live-migrate-back", nil, "live-migrated VMs to bring back")
	disable.Flags().StringSliceVar(&offlineBack, "offline-migrate-back", nil, "offline-migrated VMs to bring back")
	disable.Flags().BoolVar(&wait, "wait", false, "wait until the host is out of maintenance")

	exitPrecheck := &cobra.Command{
		Use:   "exit-precheck HOST",
		Short: "List what left the host for its maintenance and where it is now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return read(g, func(cx context.Context, c *api.Client) (*api.ExitPrecheck, error) { return c.ExitPrecheck(cx, args[0]) }, func(ep *api.ExitPrecheck) error {
				var rows [][]string
				for _, group := range [][]api.LeftVM{ep.ShutdownVMs, ep.LiveMigratedVMs, ep.OfflineMigratedVMs} {
					for _, l := range group {
						rows = append(rows, []string{l.Name, l.Action, l.MovedTo, l.NowOn, l.PowerState})
					}
				}
				if ep.MigrateBackOnExit {
					fmt.Fprintln(g.stdout, "Policy: every moved VM migrates back on exit.")
				}
				return table(g.stdout, "VM\tLEFT BY\tMOVED TO\tNOW ON\tPOWER", rows)
			})
		},
	}
	addOutput(exitPrecheck, g)
	m.AddCommand(precheck, enable, disable, exitPrecheck)
	host.AddCommand(m)

	var reason string
	var confirm bool
	status := &cobra.Command{
		Use:   "status HOST STATUS",
		Short: "Set a host's admin status: AVAILABLE, NOT_ACCEPTING, MAINTENANCE or OFFLINE",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st := strings.ToUpper(args[1])
			if !cluster.AdminStatus(st).Valid() {
				return usagef("status %q is not one of AVAILABLE, NOT_ACCEPTING, MAINTENANCE, OFFLINE", args[1])
			}
			return write(g, func(cx context.Context, c *api.Client) error {
				if _, err := c.SetHostStatus(cx, args[0], api.StatusRequest{Status: st, Reason: reason, ConfirmFenced: confirm}); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "Host %s is %s\n", args[0], st)
				return nil
			})
		},
	}
	status.Flags().StringVar(&reason, "reason", "", "why (kept with the status and in the action log)")
	status.Flags().BoolVar(&confirm, "confirm-fenced", false, "with OFFLINE: I confirm the host is powered off or isolated")
	host.AddCommand(status)
	addDevHostCmds(host, g)
	addDevRebootCmd(host, g)
}

func printPrecheck(w io.Writer, pc *api.Precheck) error {
	var rows [][]string
	for _, group := range [][]api.PrecheckItem{pc.LiveMigrateVMs, pc.OfflineMigrateVMs, pc.ShutdownVMs, pc.StayVMs} {
		for _, it := range group {
			rows = append(rows, []string{it.Name, it.Action, it.Target, fmt.Sprint(it.MemoryBytes >> 20), it.Reason})
		}
	}
	if err := table(w, "VM\tACTION\tTARGET\tMEM MiB\tREASON", rows); err != nil {
		return err
	}
	if len(pc.Blockers) == 0 {
		fmt.Fprintf(w, "\nNothing blocks host %s from entering maintenance.\n", pc.Host)
		return nil
	}
	fmt.Fprintf(w, "\nBlockers:\n")
	for _, b := range pc.Blockers {
		if b.VM != "" {
			fmt.Fprintf(w, "  %s: %s\n", b.VM, b.Reason)
		} else {
			fmt.Fprintf(w, "  %s\n", b.Reason)
		}
	}
	return exitErr(exitError)
}

// startOperation sends a request that starts an operation, says which, and
// with wait follows it to the end.
func startOperation(g *globals, wait bool, what string, start func(context.Context, *api.Client) (*api.OperationRef, error)) error {
	return write(g, func(cx context.Context, c *api.Client) error {
		ref, err := start(cx, c)
		if err != nil {
			return err
		}
		fmt.Fprintf(g.stdout, "%s: operation %s\n", what, ref.Operation)
		if !wait {
			return nil
		}
		return waitOperation(c, ref.Operation, g.stdout, g.stderr)
	})
}

// waitOperation follows an operation with a progress bar until it ends. It
// fails (exit 1) unless the operation succeeded.
func waitOperation(c *api.Client, id string, stdout, stderr io.Writer) error {
	var bar *progressbar.ProgressBar
	for {
		cx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		op, err := c.Operation(cx, id)
		cancel()
		if err != nil {
			return err
		}
		if bar == nil {
			bar = progressbar.NewOptions(max(op.Total, 1),
				progressbar.OptionSetWriter(stderr),
				progressbar.OptionShowCount(),
				progressbar.OptionSetWidth(30),
				progressbar.OptionSetPredictTime(false),
				progressbar.OptionClearOnFinish())
		}
		_ = bar.Set(op.Done + op.Failed + op.Cancelled)
		bar.Describe(fmt.Sprintf("%s %s: %d running, %d failed", op.Kind, op.Host, op.Running, op.Failed))
		if op.State.Terminal() {
			_ = bar.Finish()
			fmt.Fprintf(stdout, "Operation %s %s: %d of %d done, %d failed, %d cancelled\n", op.ID, op.State, op.Done, op.Total, op.Failed, op.Cancelled)
			if op.Error != "" {
				fmt.Fprintf(stdout, "  %s\n", op.Error)
			}
			if op.Kind == api.OpEvacuate {
				if h, err := c.Host(context.Background(), op.Host); err == nil {
					fmt.Fprintf(stdout, "Host %s: maintenance %s%s\n", h.Name, h.Maintenance, reason(h.MaintenanceNote))
				}
			}
			if op.State != api.OpSucceeded {
				return exitErr(exitError)
			}
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
}
