package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/herd-project/herd/daemon/api"
)

func addMigrateCmd(vm *cobra.Command, g *globals) {
	var to string
	var wait bool
	cmd := &cobra.Command{
		Use:   "migrate VM",
		Short: "Migrate one VM (name or id): live when running, offline when stopped",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return startOperation(g, wait, "Migrating "+args[0], func(cx context.Context, c *api.Client) (*api.OperationRef, error) {
				return c.MigrateVM(cx, args[0], api.MigrateRequest{TargetHost: to})
			})
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "target host (Herd chooses when empty)")
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
