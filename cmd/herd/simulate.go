package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/herd-project/herd/daemon/api"
)

func newSimulateCmd(g *globals) *cobra.Command {
	sim := &cobra.Command{Use: "simulate", Short: "What-if plans from the live state; nothing changes"}
	failure := &cobra.Command{
		Use:   "failure HOST [HOST...]",
		Short: "The recovery Herd would run if these hosts failed now",
		Long: "Plans, from the live state and with the planner recovery itself uses, what Herd would do\n" +
			"if the hosts failed now: which VMs are recreated where and in which order, which are blocked\n" +
			"and by which rule, which shut-off VMs are only registered, and the failover capacity after.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return read(g, func(cx context.Context, c *api.Client) (*api.FailureSimulation, error) {
				return c.SimulateFailure(cx, args)
			}, func(s *api.FailureSimulation) error { return printSimulation(g.stdout, s) })
		},
	}
	addOutput(failure, g)
	sim.AddCommand(failure)
	return sim
}

// printSimulation shows a failure simulation: the hosts, the steps in the
// order they start, then the blocked ones, then the totals.
func printSimulation(w io.Writer, s *api.FailureSimulation) error {
	var names []string
	for _, h := range s.Hosts {
		names = append(names, h.Name)
	}
	fmt.Fprintf(w, "If %s failed now (nothing changes; planned from the live state):\n", esc(strings.Join(names, ", ")))
	for _, h := range s.Hosts {
		if h.Note != "" {
			fmt.Fprintf(w, "  %s (%s, %d VMs): %s\n", esc(h.Name), h.Health, h.VMs, esc(h.Note))
		}
	}
	steps := append([]api.RecoveryStep(nil), s.Steps...)
	sort.SliceStable(steps, func(i, j int) bool {
		a, b := steps[i], steps[j]
		if (a.Order == 0) != (b.Order == 0) {
			return a.Order != 0
		}
		return a.Order < b.Order
	})
	if len(steps) == 0 {
		fmt.Fprintln(w, "No VMs to recover.")
	} else {
		var rows [][]string
		for _, st := range steps {
			order, target := "-", st.Target
			if st.Order > 0 {
				order = fmt.Sprint(st.Order)
			} else {
				target = "blocked: " + st.Blocked
			}
			rows = append(rows, []string{order, st.Name, st.From, st.Action, fmt.Sprint(st.Priority), fmt.Sprint(st.MemoryBytes >> 20), target})
		}
		if err := table(w, "ORDER\tVM\tFROM\tACTION\tPRIORITY\tMEM MiB\tTARGET", rows); err != nil {
			return err
		}
		for _, st := range steps {
			if st.Blocked != "" {
				fmt.Fprintf(w, "  %s: %s\n", esc(st.Name), esc(st.Why))
			}
		}
	}
	fmt.Fprintf(w, "Recreated and started: %d, registered (shut off, not started): %d, blocked: %d\n", s.Recreated, s.Registered, s.Blocked)
	fmt.Fprintf(w, "Failover capacity: %d hosts now, %d after (failover.min_host_failures %d)\n", s.FailoverBefore, s.FailoverAfter, s.FailoverMin)
	for _, n := range s.Notes {
		fmt.Fprintf(w, "Note: %s\n", esc(n))
	}
	return nil
}
