package policy

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/herd-project/herd/policy/yamlfile"
)

// Defaults of the keys a policy file may leave out.
const (
	DefaultPerSource         = 2
	DefaultAttempts          = 3
	DefaultSuspectAfter      = 2 * time.Second
	DefaultDeadAfter         = 10 * time.Second
	DefaultAliveAfter        = 10 * time.Second
	DefaultPerTarget         = 2
	DefaultClusterMigrations = 8
	DefaultMigrationTimeout  = 30 * time.Minute
	DefaultShutdownTimeout   = 5 * time.Minute
	DefaultNoProgressTimeout = time.Hour
	DefaultRetryBackoff      = 5 * time.Second
	DefaultThreshold         = 0.10
	DefaultMinGain           = 0.01
	DefaultMaxMoves          = 10
	DefaultBalanceInterval   = 5 * time.Minute
	DefaultBalanceHold       = time.Hour
	DefaultTargetUtilisation = 0.8
	DefaultRuleWeight        = 10
	DefaultPromTimeout       = 5 * time.Second
	DefaultPromHostLabel     = "instance"
	DefaultStormThreshold    = 0.5
	DefaultLeaseTTL          = 10 * time.Second
	DefaultLeaseMargin       = time.Second
	DefaultRecoveryBackoff   = 5 * time.Second
	DefaultRecoveryMaxWait   = 2 * time.Minute
	DefaultRecoveryParallel  = 8
	DefaultFenceTimeout      = 30 * time.Second
	DefaultFenceConfirm      = 60 * time.Second
)

// node is a possibly absent YAML node, for asking which keys a file sets.
type node struct{ n *yaml.Node }

// rootNode returns the top mapping of a decoded document.
func rootNode(doc *yamlfile.Doc) node {
	if doc == nil || doc.Root == nil {
		return node{}
	}
	n := doc.Root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	return node{n}
}

// get returns the value of key, or an absent node.
func (n node) get(key string) node {
	if n.n == nil || n.n.Kind != yaml.MappingNode {
		return node{}
	}
	for i := 0; i+1 < len(n.n.Content); i += 2 {
		if n.n.Content[i].Value == key {
			return node{n.n.Content[i+1]}
		}
	}
	return node{}
}

// item returns element i of a sequence, or an absent node.
func (n node) item(i int) node {
	if n.n == nil || n.n.Kind != yaml.SequenceNode || i >= len(n.n.Content) {
		return node{}
	}
	return node{n.n.Content[i]}
}

// step follows one step of a key path: "[i]", ".key" or "key".
func (n node) step(part string) node {
	if strings.HasPrefix(part, "[") {
		i, err := strconv.Atoi(strings.Trim(part, "[]"))
		if err != nil || i < 0 {
			return node{}
		}
		return n.item(i)
	}
	return n.get(strings.TrimPrefix(part, "."))
}

// has reports whether key is set to something other than null.
func (n node) has(key string) bool {
	v := n.get(key).n
	return v != nil && v.Tag != "!!null"
}

// orDefault sets *v to def unless the mapping n sets key.
func orDefault[T any](n node, key string, v *T, def T) {
	if !n.has(key) {
		*v = def
	}
}

// setDefaults fills in every key that root (the file's top mapping; absent
// for a document built in code) leaves out. Keys that are set keep their
// value, even zero, so that validation can reject it.
func setDefaults(d *Document, root node) {
	orDefault(root.get("placement"), "strategy", &d.Placement.Strategy, StrategySpread)

	rules := root.get("rules")
	for i := range d.Rules {
		if d.Rules[i].Enforcement == Should {
			orDefault(rules.item(i), "weight", &d.Rules[i].Weight, DefaultRuleWeight)
		}
	}

	m, mp := root.get("maintenance"), &d.Maintenance
	orDefault(m, "per_source", &mp.PerSource, DefaultPerSource)
	orDefault(m, "per_target", &mp.PerTarget, DefaultPerTarget)
	orDefault(m, "cluster", &mp.Cluster, DefaultClusterMigrations)
	orDefault(m, "attempts", &mp.Attempts, DefaultAttempts)
	orDefault(m, "migration_timeout", &mp.MigrationTimeout, DefaultMigrationTimeout)
	orDefault(m, "shutdown_timeout", &mp.ShutdownTimeout, DefaultShutdownTimeout)
	orDefault(m, "no_progress_timeout", &mp.NoProgressTimeout, DefaultNoProgressTimeout)
	orDefault(m, "retry_backoff", &mp.RetryBackoff, DefaultRetryBackoff)

	b, bp := root.get("balancing"), &d.Balancing
	orDefault(b, "mode", &bp.Mode, BalanceOff)
	orDefault(b, "strategy", &bp.Strategy, BalanceEven)
	orDefault(b, "metric", &bp.Metric, BalanceByMemory)
	orDefault(b, "threshold", &bp.Threshold, DefaultThreshold)
	orDefault(b, "min_gain", &bp.MinGain, DefaultMinGain)
	orDefault(b, "max_moves", &bp.MaxMoves, DefaultMaxMoves)
	orDefault(b, "interval", &bp.Interval, DefaultBalanceInterval)
	orDefault(b, "hold", &bp.Hold, DefaultBalanceHold)
	orDefault(b, "target_utilisation", &bp.TargetUtilisation, DefaultTargetUtilisation)

	hn, hp := root.get("health"), &d.Health
	orDefault(hn, "suspect_after", &hp.SuspectAfter, DefaultSuspectAfter)
	orDefault(hn, "dead_after", &hp.DeadAfter, DefaultDeadAfter)
	orDefault(hn, "alive_after", &hp.AliveAfter, DefaultAliveAfter)

	rn, rp := root.get("recovery"), &d.Recovery
	orDefault(rn, "automatic", &rp.Automatic, true)
	orDefault(rn, "storm_threshold", &rp.StormThreshold, DefaultStormThreshold)
	orDefault(rn, "lease_ttl", &rp.LeaseTTL, DefaultLeaseTTL)
	orDefault(rn, "lease_margin", &rp.LeaseMargin, DefaultLeaseMargin)
	orDefault(rn, "retry_backoff", &rp.RetryBackoff, DefaultRecoveryBackoff)
	orDefault(rn, "max_backoff", &rp.MaxBackoff, DefaultRecoveryMaxWait)
	orDefault(rn, "concurrency", &rp.Concurrency, DefaultRecoveryParallel)
	fn := rn.get("fencing")
	for i := range rp.Fencing {
		orDefault(fn.item(i), "timeout", &rp.Fencing[i].Timeout, DefaultFenceTimeout)
		orDefault(fn.item(i), "confirm_timeout", &rp.Fencing[i].ConfirmTimeout, DefaultFenceConfirm)
	}

	rolloutDefaults(d, root)

	setAlertmanagerDefaults(d.Alertmanager, root.get("alertmanager"))
	if p := d.MetricSources.Prometheus; p != nil {
		pn := root.get("metric_sources").get("prometheus")
		orDefault(pn, "timeout", &p.Timeout, DefaultPromTimeout)
		orDefault(pn, "host_label", &p.HostLabel, DefaultPromHostLabel)
	}
}

var documentType = reflect.TypeOf(Document{})

// wholeNumbers reports fractions given for whole-number keys, which yaml.v3
// would silently truncate (max_moves: 1.5 reads as 1).
func wholeNumbers(file string, root *yaml.Node, path string) yamlfile.Errors {
	var errs yamlfile.Errors
	if root != nil {
		walkInts(file, root, documentType, path, &errs)
	}
	return errs
}

func walkInts(file string, n *yaml.Node, t reflect.Type, path string, errs *yamlfile.Errors) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if f, ok := fieldByTag(t, k); ok {
				walkInts(file, n.Content[i+1], f, joinPath(path, k), errs)
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, v := range n.Content {
			walkInts(file, v, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!float" {
			return
		}
		if f, err := strconv.ParseFloat(n.Value, 64); err != nil || f != math.Trunc(f) {
			*errs = append(*errs, &yamlfile.Error{File: file, Line: n.Line, Column: n.Column, Path: path,
				Msg: "must be a whole number, got " + n.Value})
		}
	}
}

// fieldByTag returns the type of the field of struct t whose yaml key is key.
func fieldByTag(t reflect.Type, key string) (reflect.Type, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == key && f.IsExported() {
			return f.Type, true
		}
	}
	return nil, false
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
