package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/herd-project/herd/daemon/api"
)

func newBalanceCmd(g *globals) *cobra.Command {
	b := &cobra.Command{Use: "balance", Short: "Load balancing: recommendations and applying them"}
	plan := &cobra.Command{
		Use:   "plan",
		Short: "Show the moves the balancer recommends now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return read(g, func(cx context.Context, c *api.Client) (*api.BalancePlan, error) { return c.BalancePlan(cx) }, func(p *api.BalancePlan) error {
				fmt.Fprintf(g.stdout, "Mode %s, strategy %s by %s: imbalance %.3f (threshold %.3f), after the plan %.3f\n",
					p.Mode, p.Strategy, p.Metric, p.Before, p.Threshold, p.After)
				fmt.Fprintf(g.stdout, "Spread (coefficient of variation of host utilisation): %.3f, after the plan %.3f\n", p.SpreadBefore, p.SpreadAfter)
				if p.Note != "" {
					fmt.Fprintf(g.stdout, "Note: %s\n", esc(p.Note))
				}
				if p.Window != nil {
					fmt.Fprintln(g.stdout, windowLine(p.Window, time.Now()))
				}
				if len(p.Violations) > 0 {
					fmt.Fprintf(g.stdout, "Must rules broken now (fixed first):\n")
					var rows [][]string
					for _, v := range p.Violations {
						fix := "→ " + v.Fix
						if v.Fix == "" {
							fix = "cannot fix: " + v.Why
						}
						rows = append(rows, []string{esc(v.Name), v.Host, esc(v.Rule), v.Reason, esc(fix)})
					}
					if err := table(g.stdout, "VM\tHOST\tRULE\tBROKEN\tFIX", rows); err != nil {
						return err
					}
				}
				if len(p.Moves) == 0 {
					fmt.Fprintf(g.stdout, "No moves: %s\n", esc(p.Reason))
					return nil
				}
				var rows [][]string
				for _, m := range p.Moves {
					kind := "live"
					if m.Offline {
						kind = "offline"
					}
					rows = append(rows, []string{m.Name, m.From, m.To, kind, fmt.Sprint(m.MemoryBytes >> 20), fmt.Sprintf("%.3f", m.Gain)})
				}
				if err := table(g.stdout, "VM\tFROM\tTO\tMOVE\tMEM MiB\tGAIN", rows); err != nil {
					return err
				}
				if len(p.EmptyHosts) > 0 {
					fmt.Fprintf(g.stdout, "Hosts emptied (can be powered off): %s\n", esc(strings.Join(p.EmptyHosts, " ")))
				}
				return nil
			})
		},
	}
	addOutput(plan, g)
	var wait bool
	apply := &cobra.Command{
		Use:   "apply",
		Short: "Run the recommended moves now, as one operation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return startOperation(g, wait, "Balancing", func(cx context.Context, c *api.Client) (*api.OperationRef, error) {
				return c.BalanceApply(cx)
			})
		},
	}
	apply.Flags().BoolVar(&wait, "wait", false, "wait until the moves end")
	b.AddCommand(plan, apply)
	return b
}
