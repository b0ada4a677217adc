package policy

import (
	"fmt"
	"math"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/herd-project/herd/policy/yamlfile"
)

// checker collects validation errors, each positioned at its key path.
type checker struct {
	doc  *yamlfile.Doc
	errs yamlfile.Errors
}

func (c *checker) add(path, format string, args ...any) {
	c.errs = append(c.errs, c.doc.At(path, format, args...))
}

// validate checks every field of d, whose defaults are applied, and then
// the references between sections, reporting every problem found.
func validate(d *Document, doc *yamlfile.Doc) yamlfile.Errors {
	c := &checker{doc: doc}
	c.header(d)
	hosts := c.hostGroups(d.HostGroups)
	vms := c.vmGroups(d.VMGroups)
	c.placement(d.Placement)
	c.rules(d.Rules, hosts, vms)
	c.budgets(d.DisruptionBudgets, vms)
	c.maintenance(d.Maintenance)
	windows := c.windows(d.Windows)
	c.balancing(d.Balancing, d.MetricSources.Prometheus)
	if d.Balancing.Window != "" {
		c.ref("balancing.window", "window", d.Balancing.Window, "windows", windows)
	}
	c.atLeast("failover.min_host_failures", d.Failover.MinHostFailures, 0)
	c.health(d.Health)
	for key, q := range map[string]string{"health.down_query": d.Health.DownQuery, "health.degraded_query": d.Health.DegradedQuery} {
		if q != "" && d.MetricSources.Prometheus == nil {
			c.add(key, "reads Prometheus: set metric_sources.prometheus with a url")
		}
	}
	c.recovery(d.Recovery, hosts, vms)
	c.prometheus(d.MetricSources.Prometheus)
	c.rollout(d.Rollout)
	c.alertmanager(d.Alertmanager)
	c.contradictions(d)
	return c.errs
}

func (c *checker) header(d *Document) {
	for _, f := range []struct{ key, got, want string }{
		{"apiVersion", d.APIVersion, APIVersion},
		{"kind", d.Kind, Kind},
	} {
		switch f.got {
		case f.want:
		case "":
			c.add(f.key, "missing; must be %q", f.want)
		default:
			c.add(f.key, "must be %q, got %q", f.want, f.got)
		}
	}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)

// names checks that every name of a list is present, well formed and
// unique, and returns the index of each good one.
func (c *checker) names(list string, n int, name func(i int) string) map[string]int {
	seen := make(map[string]int, n)
	for i := 0; i < n; i++ {
		p, v := fmt.Sprintf("%s[%d].name", list, i), name(i)
		switch first, dup := seen[v]; {
		case v == "":
			c.add(p, "missing; every entry of %s needs a name", list)
		case !nameRE.MatchString(v):
			c.add(p, "%q is not a good name: use 1 to 63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit", v)
		case dup:
			c.add(p, "name %q is already used by %s[%d]", v, list, first)
		default:
			seen[v] = i
		}
	}
	return seen
}

// unique checks that no entry of a list of strings is empty or repeated.
func (c *checker) unique(list string, values []string) {
	seen := make(map[string]int, len(values))
	for i, v := range values {
		p := fmt.Sprintf("%s[%d]", list, i)
		if first, dup := seen[v]; dup {
			c.add(p, "%q is listed twice (also %s[%d])", v, list, first)
			continue
		}
		seen[v] = i
		if strings.TrimSpace(v) == "" {
			c.add(p, "must not be empty")
		}
	}
}

func (c *checker) hostGroups(gs []HostGroup) map[string]int {
	for i, g := range gs {
		p := fmt.Sprintf("host_groups[%d]", i)
		c.unique(p+".hosts", g.Hosts)
		for _, k := range sortedKeys(g.Selector) {
			if strings.TrimSpace(k) == "" {
				c.add(p+".selector", "label names must not be empty")
			}
		}
		if len(g.Hosts) == 0 && len(g.Selector) == 0 {
			c.add(p+".hosts", "host group %q has neither hosts nor a selector: it would hold no host", g.Name)
		}
	}
	return c.names("host_groups", len(gs), func(i int) string { return gs[i].Name })
}

func (c *checker) vmGroups(gs []VMGroup) map[string]int {
	for i, g := range gs {
		p := fmt.Sprintf("vm_groups[%d]", i)
		c.unique(p+".vms", g.VMs)
		if g.Pattern != "" {
			if _, err := path.Match(g.Pattern, ""); err != nil {
				c.add(p+".pattern", "bad pattern %q: %v", g.Pattern, err)
			}
		}
		if len(g.VMs) == 0 && g.Pattern == "" {
			c.add(p+".vms", "vm group %q has neither vms nor a pattern: it would hold no VM", g.Name)
		}
		c.atLeast(p+".priority", g.Priority, 0)
	}
	return c.names("vm_groups", len(gs), func(i int) string { return gs[i].Name })
}

func (c *checker) placement(p PlacementPolicy) {
	c.oneOf("placement.strategy", p.Strategy, StrategySpread, StrategyPack)
	if !(p.MemoryReserve >= 0 && p.MemoryReserve < 1) {
		c.add("placement.memory_reserve", "must be at least 0 and below 1, got %v", p.MemoryReserve)
	}
	if !(p.CPUOvercommit >= 0) || math.IsInf(p.CPUOvercommit, 0) {
		c.add("placement.cpu_overcommit", "must be 0 (no limit) or more, got %v", p.CPUOvercommit)
	}
}

// ruleTypes and whether each names a host group.
var ruleTypes = map[string]bool{
	RuleVMAffinity: false, RuleVMAntiAffinity: false, RuleVMHostAffinity: true, RuleVMHostAntiAffinity: true,
}

// RuleTypeHosts reports whether a rule of type t names a host group, and
// whether t is a rule type at all.
func RuleTypeHosts(t string) (hosts, known bool) {
	hosts, known = ruleTypes[t]
	return hosts, known
}

func (c *checker) rules(rs []Rule, hosts, vms map[string]int) {
	c.names("rules", len(rs), func(i int) string { return rs[i].Name })
	for i, r := range rs {
		p := fmt.Sprintf("rules[%d]", i)
		c.oneOf(p+".type", r.Type, RuleVMAffinity, RuleVMAntiAffinity, RuleVMHostAffinity, RuleVMHostAntiAffinity)
		c.oneOf(p+".enforcement", r.Enforcement, Must, Should)
		c.ref(p+".vm_group", "vm group", r.VMGroup, "vm_groups", vms)
		needsHosts, known := ruleTypes[r.Type]
		switch {
		case needsHosts && r.HostGroup == "":
			c.add(p+".host_group", "missing; a %s rule needs a host_group", r.Type)
		case needsHosts:
			c.ref(p+".host_group", "host group", r.HostGroup, "host_groups", hosts)
		case known && r.HostGroup != "":
			c.add(p+".host_group", "a %s rule takes no host_group (it relates the group's VMs to each other)", r.Type)
		}
		switch r.Enforcement {
		case Should:
			c.between(p+".weight", r.Weight, 1, 100)
		case Must:
			if r.Weight != 0 {
				c.add(p+".weight", "weight is for should rules only; this rule is must")
			}
		}
	}
}

func (c *checker) budgets(bs []DisruptionBudget, vms map[string]int) {
	first := make(map[string]int, len(bs))
	for i, b := range bs {
		p := fmt.Sprintf("disruption_budgets[%d]", i)
		c.ref(p+".vm_group", "vm group", b.VMGroup, "vm_groups", vms)
		if j, dup := first[b.VMGroup]; dup && b.VMGroup != "" {
			c.add(p+".vm_group", "vm group %q already has a budget (disruption_budgets[%d])", b.VMGroup, j)
		} else {
			first[b.VMGroup] = i
		}
		c.atLeast(p+".max_migrating", b.MaxMigrating, 1)
	}
}

func (c *checker) health(h HealthPolicy) {
	// Sub-second thresholds are allowed: fast detection is a choice.
	c.durationAtLeast("health.suspect_after", h.SuspectAfter, 100*time.Millisecond)
	c.durationAtLeast("health.dead_after", h.DeadAfter, 100*time.Millisecond)
	c.durationAtLeast("health.alive_after", h.AliveAfter, 100*time.Millisecond)
	if h.DeadAfter <= h.SuspectAfter && h.SuspectAfter >= 100*time.Millisecond {
		c.add("health.dead_after", "%s must be longer than suspect_after (%s)", h.DeadAfter, h.SuspectAfter)
	}
}

func (c *checker) maintenance(m MaintenancePolicy) {
	c.atLeast("maintenance.per_source", m.PerSource, 1)
	c.atLeast("maintenance.per_target", m.PerTarget, 1)
	c.atLeast("maintenance.cluster", m.Cluster, 1)
	c.between("maintenance.attempts", m.Attempts, 1, 10)
	c.duration("maintenance.migration_timeout", m.MigrationTimeout)
	c.duration("maintenance.shutdown_timeout", m.ShutdownTimeout)
	c.duration("maintenance.no_progress_timeout", m.NoProgressTimeout)
	c.duration("maintenance.retry_backoff", m.RetryBackoff)
}

func (c *checker) balancing(b BalancingPolicy, prom *PrometheusSource) {
	c.oneOf("balancing.mode", b.Mode, BalanceOff, BalanceRecommend, BalanceAutomatic)
	c.oneOf("balancing.strategy", b.Strategy, BalanceEven, BalancePowerSave)
	c.oneOf("balancing.metric", b.Metric, BalanceByMemory, BalanceByCPU)
	c.share("balancing.threshold", b.Threshold)
	c.share("balancing.min_gain", b.MinGain)
	c.atLeast("balancing.max_moves", b.MaxMoves, 1)
	c.duration("balancing.interval", b.Interval)
	c.durationAtLeast("balancing.hold", b.Hold, 0)
	if !(b.TargetUtilisation > 0 && b.TargetUtilisation <= 1) {
		c.add("balancing.target_utilisation", "must be above 0 and at most 1, got %v", b.TargetUtilisation)
	}
	if b.Metric == BalanceByCPU {
		switch {
		case prom == nil:
			c.add("balancing.metric", "metric cpu reads CPU utilisation from Prometheus: set metric_sources.prometheus with a url and a cpu_query")
		case prom.CPUQuery == "":
			c.add("balancing.metric", "metric cpu needs metric_sources.prometheus.cpu_query")
		}
	}
}

func (c *checker) prometheus(p *PrometheusSource) {
	if p == nil {
		return
	}
	const at = "metric_sources.prometheus"
	if p.URL == "" {
		c.add(at+".url", "missing; the Prometheus server's address, such as http://prometheus:9090")
	} else if u, err := url.Parse(p.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		c.add(at+".url", "must be an http or https URL, such as http://prometheus:9090; got %q", p.URL)
	}
	c.duration(at+".timeout", p.Timeout)
	if strings.TrimSpace(p.HostLabel) == "" {
		c.add(at+".host_label", "must not be empty: it names the label that holds the host name")
	}
}

// oneOf checks an enumerated value.
func (c *checker) oneOf(p, got string, allowed ...string) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	if got == "" {
		c.add(p, "missing; must be one of %s", strings.Join(allowed, ", "))
		return
	}
	c.add(p, "must be one of %s; got %q%s", strings.Join(allowed, ", "), got, didYouMean(got, allowed))
}

// ref checks a reference to a named entry of list.
func (c *checker) ref(p, what, name, list string, known map[string]int) {
	if name == "" {
		c.add(p, "missing; name one of %s", list)
		return
	}
	if _, ok := known[name]; ok {
		return
	}
	if len(known) == 0 {
		c.add(p, "unknown %s %q: %s defines none", what, name, list)
		return
	}
	names := sortedKeys(known)
	if hint := didYouMean(name, names); hint != "" {
		c.add(p, "unknown %s %q%s", what, name, hint)
		return
	}
	c.add(p, "unknown %s %q (known: %s)", what, name, strings.Join(names, ", "))
}

func (c *checker) atLeast(p string, v, lo int) {
	if v < lo {
		c.add(p, "must be at least %d, got %d", lo, v)
	}
}

func (c *checker) between(p string, v, lo, hi int) {
	if v < lo || v > hi {
		c.add(p, "must be between %d and %d, got %d", lo, hi, v)
	}
}

// share checks a value from 0 to 1.
func (c *checker) share(p string, v float64) {
	if !(v >= 0 && v <= 1) {
		c.add(p, "must be between 0 and 1, got %v", v)
	}
}

// duration checks a duration of at least one second.
func (c *checker) duration(p string, d time.Duration) {
	c.durationAtLeast(p, d, time.Second)
}

func (c *checker) durationAtLeast(p string, d, lo time.Duration) {
	if d < lo {
		c.add(p, "must be at least %s, got %s", lo, d)
	}
}

// didYouMean suggests the closest of names to got, or "": at most two
// edits away, and one per three letters of got.
func didYouMean(got string, names []string) string {
	best, bestD := "", min(3, max(2, len(got)/3+1))
	for _, n := range names {
		if d := yamlfile.EditDistance(strings.ToLower(got), strings.ToLower(n)); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (c *checker) recovery(r RecoveryPolicy, hosts, vms map[string]int) {
	const at = "recovery"
	if !(r.StormThreshold > 0 && r.StormThreshold <= 1) {
		c.add(at+".storm_threshold", "must be above 0 and at most 1, got %v", r.StormThreshold)
	}
	c.duration(at+".lease_ttl", r.LeaseTTL)
	c.durationAtLeast(at+".lease_margin", r.LeaseMargin, 500*time.Millisecond)
	c.durationAtLeast(at+".retry_backoff", r.RetryBackoff, 100*time.Millisecond)
	if r.MaxBackoff < r.RetryBackoff {
		c.add(at+".max_backoff", "%s must not be shorter than retry_backoff (%s)", r.MaxBackoff, r.RetryBackoff)
	}
	c.between(at+".concurrency", r.Concurrency, 1, 256)
	if r.ReservedHostGroup != "" {
		c.ref(at+".reserved_host_group", "host group", r.ReservedHostGroup, "host_groups", hosts)
	}
	for i, g := range r.ExcludeVMGroups {
		c.ref(fmt.Sprintf("%s.exclude_vm_groups[%d]", at, i), "vm group", g, "vm_groups", vms)
	}
	c.names(at+".fencing", len(r.Fencing), func(i int) string { return r.Fencing[i].Name })
	for i, m := range r.Fencing {
		p := fmt.Sprintf("%s.fencing[%d]", at, i)
		c.oneOf(p+".type", m.Type, FencePower, FenceLease, FenceDev)
		if m.HostGroup != "" {
			c.ref(p+".host_group", "host group", m.HostGroup, "host_groups", hosts)
		}
		switch m.Type {
		case FencePower:
			if m.Agent == "" {
				c.add(p+".agent", "missing; a power method runs a fence agent such as fence_ipmilan or fence_redfish")
			}
			c.fenceParams(p+".params", m.Params)
			for h, ps := range m.HostParams {
				c.fenceParams(p+".host_params."+h, ps)
			}
			for k, f := range m.SecretFiles {
				switch {
				case !paramRE.MatchString(k) || k == "action":
					c.add(p+".secret_files."+k, "%q is not a parameter name a fence agent takes", k)
				case !strings.HasPrefix(f, "/"):
					c.add(p+".secret_files."+k, "must be an absolute path, got %q", f)
				}
				if _, dup := m.Params[k]; dup {
					c.add(p+".secret_files."+k, "%s is also set in params: a secret lives in its file only", k)
				}
			}
			c.duration(p+".timeout", m.Timeout)
			c.durationAtLeast(p+".confirm_timeout", m.ConfirmTimeout, 100*time.Millisecond)
		default:
			if m.Agent != "" || len(m.Params) > 0 || len(m.HostParams) > 0 || len(m.SecretFiles) > 0 {
				c.add(p+".type", "a %s method takes no agent, params, host_params or secret_files", m.Type)
			}
		}
	}
}

var paramRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (c *checker) fenceParams(p string, ps map[string]string) {
	for k, v := range ps {
		switch {
		case !paramRE.MatchString(k) || k == "action":
			c.add(p+"."+k, "%q is not a parameter name a fence agent takes", k)
		case strings.ContainsAny(v, "\n\r"):
			c.add(p+"."+k, "must not contain a line break")
		case k == "password" || k == "passwd":
			c.add(p+"."+k, "a password does not belong in the policy (GET /v1/policy shows it): use secret_files")
		}
	}
}
