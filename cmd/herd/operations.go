package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/herd-project/herd/daemon/api"
)

func addMigrateCmd(vm *cobra.Command, g *globals) {
	var to string
	var wait, yes bool
	cmd := &cobra.Command{
		Use:   "migrate VM",
		Short: "Migrate one VM (name or id): live when running, offline when stopped",
		Long: `Migrate one VM (name or id): live when running, offline when stopped.

Without --to, Herd chooses the target: the command says which host it chose
and asks before it starts (--yes starts without asking).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" && !yes {
				if err := confirmMigration(g, args[0]); err != nil {
					return err
				}
			}
			return startOperation(g, wait, "Migrating "+args[0], func(cx context.Context, c *api.Client) (*api.OperationRef, error) {
				res, err := c.Migrate(cx, args[0], api.MigrateRequest{TargetHost: to})
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(g.stdout, "%s %s from %s to %s\n", res.Action, esc(res.VM), esc(res.From), esc(res.Target))
				return &res.OperationRef, nil
			})
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "target host (Herd chooses when empty, and the command asks first)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "start a migration whose target Herd chooses without asking")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the migration ends")
	vm.AddCommand(cmd)
}

func newOpCmd(g *globals) *cobra.Command {
	op := &cobra.Command{Use: "op", Short: "Operations: evacuations, exits from maintenance, migrations"}
	var host string
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List operations, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return read(g, func(cx context.Context, c *api.Client) (api.Operations, error) {
				ops, err := c.Operations(cx, host)
				return api.Operations{Operations: ops}, err
			}, func(out api.Operations) error {
				var rows [][]string
				for _, o := range out.Operations {
					rows = append(rows, []string{o.ID, string(o.Kind), o.Host, string(o.State), fmt.Sprintf("%d/%d", o.Done, o.Total),
						fmt.Sprint(o.Running), fmt.Sprint(o.Failed), o.Created.Local().Format("2006-01-02 15:04:05"), o.Actor})
				}
				return table(g.stdout, "ID\tKIND\tHOST\tSTATE\tDONE\tRUNNING\tFAILED\tCREATED\tACTOR", rows)
			})
		},
	}
	ls.Flags().StringVar(&host, "host", "", "only operations on this host")
	addOutput(ls, g)

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show an operation and every VM's step",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return read(g, func(cx context.Context, c *api.Client) (*api.Operation, error) { return c.Operation(cx, args[0]) },
				func(o *api.Operation) error { return printOperation(g, o) })
		},
	}
	addOutput(show, g)

	control := func(use, short string, call func(c *api.Client, cx context.Context, id string) (*api.Operation, error)) *cobra.Command {
		return &cobra.Command{
			Use:   use + " ID",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return write(g, func(cx context.Context, c *api.Client) error {
					o, err := call(c, cx, args[0])
					if err != nil {
						return err
					}
					fmt.Fprintf(g.stdout, "Operation %s: %s\n", esc(o.ID), opStateWord(o))
					return nil
				})
			},
		}
	}
	cancelCmd := control("cancel", "Stop an operation: migrations in flight finish, nothing new starts, the host stays closed", (*api.Client).CancelOperation)
	retryCmd := control("retry", "Run a failed or cancelled evacuation again", (*api.Client).RetryOperation)
	op.AddCommand(ls, show, cancelCmd, retryCmd)
	return op
}

// opStateWord says what an operation is doing: a cancelled one whose
// steps in flight have not ended yet is stopping, not running.
func opStateWord(o *api.Operation) string {
	if o.Stopping {
		if o.Running > 0 {
			return fmt.Sprintf("stopping (cancelled; %d steps in flight finish, nothing new starts)", o.Running)
		}
		return "stopping (cancelled)"
	}
	return string(o.State)
}

func printOperation(g *globals, o *api.Operation) error {
	fmt.Fprintf(g.stdout, "Operation %s: %s of %s, %s (by %s)\n", esc(o.ID), o.Kind, esc(opSubject(o)), opStateWord(o), esc(o.Actor))
	if o.Migrate != "" || o.TargetHost != "" {
		fmt.Fprintf(g.stdout, "Migrate: %s  Target host: %s\n", o.Migrate, esc(o.TargetHost))
	}
	fmt.Fprintf(g.stdout, "Steps: %d total, %d done, %d running, %d pending, %d failed, %d cancelled\n",
		o.Total, o.Done, o.Running, o.Pending, o.Failed, o.Cancelled)
	if o.Error != "" {
		fmt.Fprintf(g.stdout, "Error: %s\n", esc(o.Error))
	}
	fmt.Fprintln(g.stdout)
	var rows [][]string
	for _, it := range o.Items {
		rows = append(rows, []string{it.Name, it.Action, fmt.Sprint(it.MemoryBytes >> 20), it.From, it.Target, string(it.State), fmt.Sprint(it.Attempts), it.Error})
	}
	return table(g.stdout, "VM\tACTION\tMEM MiB\tFROM\tTARGET\tSTATE\tATTEMPTS\tERROR", rows)
}

// opSubject is what an operation works on: its host, or for an operation
// over several hosts (balancing) each move's hosts, as "H1 → H3, H2 → H3".
func opSubject(o *api.Operation) string {
	if o.Host != "" {
		return o.Host
	}
	var pairs []string
	seen := map[string]bool{}
	for _, it := range o.Items {
		to := it.Target
		if to == "" {
			to = it.Planned
		}
		p := it.From + " → " + to
		if !seen[p] {
			seen[p] = true
			pairs = append(pairs, p)
		}
	}
	if len(pairs) == 0 {
		return "no host"
	}
	return strings.Join(pairs, ", ")
}

// confirmMigration says where Herd would send vm (a dry run) and asks on a
// terminal; elsewhere it stops and says how to go on.
func confirmMigration(g *globals, vm string) error {
	var plan api.MigratePlan
	err := write(g, func(cx context.Context, c *api.Client) error {
		res, err := c.Migrate(cx, vm, api.MigrateRequest{DryRun: true})
		if err == nil {
			plan = res.MigratePlan
		}
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "Herd would %s VM %s from %s to %s (another host if that one fails).\n", plan.Action, esc(plan.VM), esc(plan.From), esc(plan.Target))
	if !stdinTerminal() {
		return usagef("not started: add --yes to start it, or name the target with --to")
	}
	fmt.Fprint(g.stdout, "Start the migration? [y/N] ")
	answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return usagef("not started")
	}
	return nil
}

// stdinTerminal reports whether a person can answer on stdin.
var stdinTerminal = func() bool { return term.IsTerminal(int(os.Stdin.Fd())) }
