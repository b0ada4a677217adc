package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/herd-project/herd/daemon/api"
)

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns.
func table(w io.Writer, header string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = esc(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

func gib(b int64) string {
	return fmt.Sprintf("%.1f", float64(b)/(1<<30))
}

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 60*time.Second)
}

func newHostCmd(g *globals) *cobra.Command {
	host := &cobra.Command{Use: "host", Short: "Hypervisor hosts"}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List hosts with status, health, VMs and memory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return read(g, func(cx context.Context, c *api.Client) (api.Hosts, error) {
				hosts, err := c.Hosts(cx)
				return api.Hosts{Hosts: hosts}, err
			}, func(out api.Hosts) error {
				return printHosts(g, out.Hosts)
			})
		},
	}
	addOutput(ls, g)
	show := &cobra.Command{
		Use:   "show HOST",
		Short: "Show one host",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return read(g, func(cx context.Context, c *api.Client) (*api.Host, error) {
				return c.Host(cx, args[0])
			}, func(h *api.Host) error {
				return printHost(g, h)
			})
		},
	}
	addOutput(show, g)
	host.AddCommand(ls, show)
	addMaintenanceCmd(host, g)
	return host
}

func printHosts(g *globals, hosts []api.Host) error {
	var rows [][]string
	for _, h := range hosts {
		rows = append(rows, []string{h.Name, string(h.Admin), maintenanceWord(h), string(h.Health), string(h.Connection),
			fmt.Sprint(h.VMs), fmt.Sprint(h.RunningVMs), gib(h.MemoryUsedBytes) + "/" + gib(h.MemoryBytes),
			fmt.Sprintf("%d/%d", h.VCPUsUsed, h.CPUs), fmt.Sprint(h.StaleCopies), h.Driver, h.Group, dash(h.NotFenced)})
	}
	return table(g.stdout, "NAME\tADMIN\tMAINTENANCE\tHEALTH\tCONNECTION\tVMS\tRUNNING\tMEM GiB (USED/TOTAL)\tVCPU/CPU\tSTALE\tDRIVER\tGROUP\tNOT FENCED BECAUSE", rows)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printHost(g *globals, h *api.Host) error {
	rows := [][]string{
		{"Name", h.Name}, {"Driver", h.Driver}, {"Group", h.Group},
		{"Admin status", string(h.Admin) + reason(h.AdminReason)}, {"Maintenance", string(h.Maintenance) + reason(h.MaintenanceNote)},
		{"Operation", h.Operation}, {"Health", string(h.Health)}, {"Connection", string(h.Connection)},
		{"Memory", gib(h.MemoryUsedBytes) + " of " + gib(h.MemoryBytes) + " GiB used by running VMs"},
		{"CPUs", fmt.Sprintf("%d logical, %d vCPUs of running VMs", h.CPUs, h.VCPUsUsed)},
		{"VMs", fmt.Sprintf("%d (%d running)", h.VMs, h.RunningVMs)},
	}
	if h.NotFenced != "" {
		rows = append(rows, []string{"Not fenced because", h.NotFenced})
	}
	if s := h.Silence; s != nil {
		rows = append(rows, []string{"Alertmanager silence", fmt.Sprintf("%s, until %s (extended while in maintenance, expired when it ends)",
			s.ID, s.EndsAt.Local().Format("2006-01-02 15:04:05"))})
	}
	if h.StaleCopies > 0 {
		rows = append(rows, []string{"Stale copies", fmt.Sprintf("%d, destroyed when the host returns (leftovers of VMs recreated elsewhere: not VMs, power unknown)", h.StaleCopies)})
		for _, c := range h.Stale {
			rows = append(rows, []string{"", fmt.Sprintf("%s (%s); the VM is on %s", c.Name, c.VM, dash(c.VMHost))})
		}
	}
	return table(g.stdout, "FIELD\tVALUE", rows)
}

// maintenanceWord is the maintenance state, with the VMs still running on a
// host in maintenance: such a host is not empty, whatever its state.
func maintenanceWord(h api.Host) string {
	if h.Maintenance == api.MaintenanceOn && !h.Empty {
		return fmt.Sprintf("%s (%d VMs running)", h.Maintenance, h.RunningVMs)
	}
	return string(h.Maintenance)
}

func reason(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}

func newVMCmd(g *globals) *cobra.Command {
	vm := &cobra.Command{Use: "vm", Short: "Virtual machines"}
	var host string
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List VMs, optionally on one host",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return read(g, func(cx context.Context, c *api.Client) (api.VMs, error) {
				vms, err := c.VMs(cx, host)
				return api.VMs{VMs: vms}, err
			}, func(out api.VMs) error {
				return printVMs(g, out.VMs)
			})
		},
	}
	ls.Flags().StringVar(&host, "host", "", "only VMs on this host")
	addOutput(ls, g)
	vm.AddCommand(ls)
	addMigrateCmd(vm, g)
	return vm
}

// printVMs lists VMs with their effective priority (their policy groups'
// included) and their groups.
func printVMs(g *globals, vms []api.VMView) error {
	var rows [][]string
	for _, v := range vms {
		rows = append(rows, []string{v.Name, v.Host, string(v.Power), fmt.Sprint(v.MemoryBytes >> 20), fmt.Sprint(v.VCPUs), fmt.Sprint(v.Priority), dash(strings.Join(v.Groups, ",")), v.ID})
	}
	return table(g.stdout, "NAME\tHOST\tPOWER\tMEM MiB\tVCPUS\tPRIORITY\tGROUPS\tID", rows)
}

func newClusterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show the raft cluster: leader, servers, state size",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return read(g, clusterView, func(cl *api.Cluster) error {
				leader := cl.Leader
				if leader == "" {
					leader = "(none: a majority of the voters must be up to elect one)"
				}
				fmt.Fprintf(g.stdout, "Leader: %s   Answered by: %s   Applied index: %d   Hosts: %d   VMs: %d\n\n", esc(leader), esc(cl.Self.ID), cl.Index, cl.Hosts, cl.VMs)
				var rows [][]string
				for _, s := range cl.Servers {
					rows = append(rows, append([]string{s.ID}, serverState(s)...))
				}
				return table(g.stdout, "SERVER\tROLE\tSTATE\tLAST CONTACT\tLOG LAG\tRAFT\tAPI", rows)
			})
		},
	}
	addOutput(cmd, g)
	return cmd
}

// parseSince takes a duration back from now (90s, 1h, 2d) or an RFC 3339 time.
func parseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if strings.HasSuffix(v, "d") {
		var days int
		if _, err := fmt.Sscanf(v, "%dd", &days); err == nil && days >= 0 && fmt.Sprintf("%dd", days) == v {
			return now.Add(-time.Duration(days) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %q: a duration back from now must be positive", v)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration (90s, 1h, 2d) or an RFC 3339 time", v)
}

func newEventsCmd(g *globals) *cobra.Command {
	var host, vm, op, since string
	var limit int
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Read the action log, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseSince(since, time.Now())
			if err != nil {
				return usageError{err}
			}
			if limit < 0 {
				return usagef("--limit: %d must not be negative", limit)
			}
			return read(g, func(cx context.Context, c *api.Client) (*api.Events, error) {
				return c.Events(cx, api.EventQuery{Host: host, VM: vm, Operation: op, Since: t, Limit: limit})
			}, func(ev *api.Events) error {
				var rows [][]string
				for _, e := range ev.Events {
					where := e.Host
					if e.Target != "" {
						where += " → " + e.Target
					}
					rows = append(rows, []string{e.Time.Local().Format("2006-01-02 15:04:05"), e.Type, e.Actor, where, e.Message})
				}
				return table(g.stdout, "TIME\tTYPE\tACTOR\tHOST\tMESSAGE", rows)
			})
		},
	}
	cmd.Flags().StringVar(&host, "host", "", "only events about this host (VMs leaving and arriving included)")
	cmd.Flags().StringVar(&vm, "vm", "", "only events about this VM (name or id)")
	cmd.Flags().StringVar(&op, "operation", "", "only events of this operation")
	cmd.Flags().StringVar(&since, "since", "", "only events since a duration ago (1h, 2d) or an RFC 3339 time")
	cmd.Flags().IntVar(&limit, "limit", 0, "only the newest N matching events")
	addOutput(cmd, g)
	return cmd
}

// clusterView asks the leader for the cluster (its view of every server);
// without a leader, the answering server's own, marked stale.
func clusterView(cx context.Context, c *api.Client) (*api.Cluster, error) {
	lc := *c
	lc.Consistent = true
	cl, err := lc.Cluster(cx)
	var se *api.StatusError
	if errors.As(err, &se) && se.Code == http.StatusServiceUnavailable {
		return c.Cluster(cx)
	}
	return cl, err
}

// serverState is a server's role, state, last contact and log lag (with
// the raft and API addresses) as the leader sees it.
func serverState(s api.Server) []string {
	h := s.Health
	if h == nil {
		role := "voter"
		if !s.Voter {
			role = "non-voter"
		}
		return []string{role, "unknown (no leader's view)", "-", "-", s.RaftAddr, s.APIAddr}
	}
	state := "down"
	switch {
	case h.Up && h.Healthy:
		state = "up, healthy"
	case h.Up:
		state = "up, not caught up"
	case h.Unknown:
		state = "unknown"
	}
	contact := "-"
	switch {
	case h.Suffrage == "leader":
		contact = "leader"
	case !h.Up:
		contact = h.Reason
	case h.LastContactMillis >= 0:
		contact = (time.Duration(h.LastContactMillis) * time.Millisecond).String()
	}
	lag := fmt.Sprint(h.LogLag)
	if !h.Up && h.Suffrage != "leader" {
		lag = "-"
	}
	return []string{h.Suffrage, state, contact, lag, s.RaftAddr, s.APIAddr}
}
