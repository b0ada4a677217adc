package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/herd-project/herd/daemon/api"
)

// rolloutFlags are the flags plan and start share.
type rolloutFlags struct {
	hosts, group, order, migrate, hook, onFailure, window string
	all, moveBack, force                                  bool
	parallel                                              int
}

func (f *rolloutFlags) add(c *cobra.Command, start bool) {
	c.Flags().StringVar(&f.hosts, "hosts", "", "hosts to patch, comma-separated")
	c.Flags().StringVar(&f.group, "group", "", "every host of this group (a policy host group, or a driver's group)")
	c.Flags().BoolVar(&f.all, "all", false, "every host")
	c.Flags().IntVar(&f.parallel, "parallel", 1, "hosts out at once (lowered to what failover capacity allows)")
	c.Flags().StringVar(&f.order, "order", "fewest-vms", "order of the hosts: fewest-vms, group, rack or listed")
	c.Flags().StringVar(&f.migrate, "migrate", "all", "evacuation: all (running and stopped VMs) or active-only")
	if start {
		c.Flags().StringVar(&f.hook, "hook", "", "the policy's rollout hook to run on each host (none: each host waits for herd rollout continue, or its return after a reboot)")
		c.Flags().StringVar(&f.onFailure, "on-failure", "stop", "when a host fails: stop or skip")
		c.Flags().BoolVar(&f.moveBack, "move-back", false, "move each host's VMs back when it leaves maintenance")
		c.Flags().StringVar(&f.window, "window", "", "the policy's maintenance window: host steps start only while it is open")
		c.Flags().BoolVar(&f.force, "force", false, "start although the plan has blockers")
	}
}

func (f *rolloutFlags) request() api.RolloutRequest {
	req := api.RolloutRequest{Group: f.group, All: f.all, Parallel: f.parallel, Order: f.order, Migrate: f.migrate, Hook: f.hook,
		OnFailure: f.onFailure, MoveBack: f.moveBack, Window: f.window, Force: f.force}
	for _, h := range strings.Split(f.hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			req.Hosts = append(req.Hosts, h)
		}
	}
	return req
}

func newRolloutCmd(g *globals) *cobra.Command {
	ro := &cobra.Command{Use: "rollout", Short: "Rolling maintenance: patch many hosts, a wave at a time"}

	var pf rolloutFlags
	plan := &cobra.Command{
		Use:   "plan",
		Short: "Show the whole rollout before anything moves: waves, each host's VMs and where they go, blockers, duration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return read(g, func(cx context.Context, c *api.Client) (*api.RolloutPlan, error) {
				return c.RolloutPlan(cx, pf.request())
			},
				func(p *api.RolloutPlan) error { return printRolloutPlan(g, p) })
		},
	}
	pf.add(plan, false)
	addOutput(plan, g)

	var sf rolloutFlags
	start := &cobra.Command{
		Use:   "start",
		Short: "Start a rollout: per host, enter maintenance, run the hook (or wait), wait until healthy, leave maintenance",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return read(g, func(cx context.Context, c *api.Client) (*api.Rollout, error) { return c.StartRollout(cx, sf.request()) },
				func(r *api.Rollout) error {
					fmt.Fprintf(g.stdout, "Rollout %s started over %d hosts (parallel %d). Follow it: herd rollout show %s\n", r.ID, len(r.Hosts), r.Parallel, r.ID)
					return nil
				})
		},
	}
	sf.add(start, true)
	addOutput(start, g)

	ls := &cobra.Command{
		Use:   "ls",
		Short: "List rollouts, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return read(g, func(cx context.Context, c *api.Client) (api.Rollouts, error) {
				rs, err := c.Rollouts(cx)
				return api.Rollouts{Rollouts: rs}, err
			}, func(out api.Rollouts) error {
				var rows [][]string
				for _, r := range out.Rollouts {
					rows = append(rows, []string{r.ID, r.State, fmt.Sprintf("%d/%d", r.Counts["done"], len(r.Hosts)), fmt.Sprint(out1(r)),
						fmt.Sprint(r.Counts["failed"]), fmt.Sprint(r.Parallel), r.Hook, r.Created.Local().Format("2006-01-02 15:04:05"), r.Note})
				}
				return table(g.stdout, "ID\tSTATE\tDONE\tOUT\tFAILED\tPARALLEL\tHOOK\tCREATED\tNOTE", rows)
			})
		},
	}
	addOutput(ls, g)

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a rollout and every host's step",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return read(g, func(cx context.Context, c *api.Client) (*api.Rollout, error) { return c.Rollout(cx, args[0]) },
				func(r *api.Rollout) error { return printRollout(g, r) })
		},
	}
	addOutput(show, g)
	ro.AddCommand(plan, start, ls, show)

	for _, a := range []struct{ use, short string }{
		{"pause", "Pause a rollout: no host starts; hosts out finish their step"},
		{"resume", "Resume a paused rollout"},
		{"cancel", "Cancel a rollout: no host starts; it ends once the hosts out are back"},
	} {
		ro.AddCommand(&cobra.Command{
			Use: a.use + " ID", Short: a.short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return write(g, func(cx context.Context, c *api.Client) error {
					r, err := c.RolloutAction(cx, args[0], a.use)
					if err != nil {
						return err
					}
					fmt.Fprintf(g.stdout, "Rollout %s is %s\n", r.ID, r.State)
					return nil
				})
			},
		})
	}
	ro.AddCommand(&cobra.Command{
		Use:   "continue ID HOST",
		Short: "End a host's wait: its work is done (by hand); the rollout brings it back once it is healthy",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return write(g, func(cx context.Context, c *api.Client) error {
				if _, err := c.ContinueRollout(cx, args[0], args[1]); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "Host %s of rollout %s: work done; it leaves maintenance once it is back and healthy\n", args[1], args[0])
				return nil
			})
		},
	})
	return ro
}

func out1(r api.Rollout) int {
	return r.Counts["entering"] + r.Counts["working"] + r.Counts["returning"] + r.Counts["exiting"]
}

func printRolloutPlan(g *globals, p *api.RolloutPlan) error {
	src := "assumed (no migration history yet)"
	if p.FromHistory {
		src = "mean of past migrations"
	}
	fmt.Fprintf(g.stdout, "%d hosts in %d waves, parallel %d; failover capacity %d host(s); evacuations about %s (%s per migration, %s), the hosts' work on top\n",
		len(p.Hosts), len(p.Waves), p.Parallel, p.FailoverCapacity, fmtSeconds(p.EstimatedSeconds), fmtSeconds(p.MigrationSeconds), src)
	if p.ParallelNote != "" {
		fmt.Fprintln(g.stdout, "Note: "+esc(p.ParallelNote))
	}
	for _, b := range p.Blockers {
		fmt.Fprintln(g.stdout, "BLOCKER: "+esc(b))
	}
	var rows [][]string
	for _, h := range p.Hosts {
		targets := map[string]int{}
		for _, v := range h.VMs {
			if v.Target != "" {
				targets[v.Target]++
			}
		}
		var ts []string
		for t, n := range targets {
			ts = append(ts, fmt.Sprintf("%s×%d", t, n))
		}
		rows = append(rows, []string{fmt.Sprint(h.Wave), h.Host, fmt.Sprint(len(h.VMs)), strings.Join(slices.Sorted(slices.Values(ts)), " "),
			fmtSeconds(h.EstimatedSeconds), strings.Join(h.Blockers, "; ")})
	}
	if err := table(g.stdout, "WAVE\tHOST\tVMS\tTO\tEVACUATION\tBLOCKERS", rows); err != nil {
		return err
	}
	if !p.OK {
		fmt.Fprintln(g.stdout, "The plan has blockers: herd rollout start refuses it unless --force.")
	}
	return nil
}

// rolloutCancelledError is what a rollout's error says once it was
// cancelled.
const rolloutCancelledError = "cancelled"

func printRollout(g *globals, r *api.Rollout) error {
	fmt.Fprintf(g.stdout, "Rollout %s: %s (parallel %d, order %s, on failure %s, migrate %s", r.ID, r.State, r.Parallel, r.Order, r.OnFailure, r.Migrate)
	if r.Hook != "" {
		fmt.Fprintf(g.stdout, ", hook %s", esc(r.Hook))
	}
	if r.Window != "" {
		fmt.Fprintf(g.stdout, ", window %s", esc(r.Window))
	}
	fmt.Fprintf(g.stdout, ") by %s\n", esc(r.Actor))
	if r.Note != "" {
		fmt.Fprintln(g.stdout, "Waiting: "+esc(r.Note))
	}
	switch {
	case r.Error == rolloutCancelledError && r.State == "cancelled":
		// A cancel is the operator's choice, not an error.
		fmt.Fprintln(g.stdout, "Cancelled: no host started after the cancel; the hosts that had not started are skipped.")
	case r.Error == rolloutCancelledError:
		fmt.Fprintln(g.stdout, "Cancelling: no other host starts; the rollout ends once the hosts out now are back.")
	case r.Error != "":
		fmt.Fprintln(g.stdout, "Error: "+esc(r.Error))
	}
	var rows [][]string
	for _, h := range r.Hosts {
		since := ""
		if !h.PhaseSince.IsZero() {
			since = time.Since(h.PhaseSince).Round(time.Second).String()
		}
		detail := h.Note
		if h.Error != "" {
			detail = h.Error
		}
		rows = append(rows, []string{fmt.Sprint(h.Wave), h.Host, h.Phase, since, detail})
	}
	return table(g.stdout, "WAVE\tHOST\tPHASE\tFOR\tDETAIL", rows)
}

func fmtSeconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
}

// addDevRebootCmd adds herd host reboot: a dev-mode simulator host goes
// down and comes back.
func addDevRebootCmd(host *cobra.Command, g *globals) {
	var down time.Duration
	cmd := &cobra.Command{
		Use:   "reboot HOST",
		Short: "Dev mode: a simulator host goes down and comes back after --down, as a patch reboot does",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return write(g, func(cx context.Context, c *api.Client) error {
				if err := c.DevReboot(cx, args[0], down); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "Host %s reboots: down now, back in %s\n", args[0], down)
				return nil
			})
		},
	}
	cmd.Flags().DurationVar(&down, "down", 5*time.Second, "how long the host stays down")
	host.AddCommand(cmd)
}
