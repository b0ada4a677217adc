package policy

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// AlertmanagerPolicy connects Herd to Alertmanager both ways: Herd silences
// the alerts of hosts in maintenance (when URLs are set), and Alertmanager's
// webhook asks Herd to act on hosts (Webhook.Actions).
type AlertmanagerPolicy struct {
	// URLs are every member of the Alertmanager cluster; a silence is
	// written to the first that answers and gossiped to the others.
	URLs []string `yaml:"urls,omitempty" json:"urls,omitempty"`
	// TokenFile holds a bearer token sent to Alertmanager (a file on each
	// server: the policy is shown by GET /v1/policy, a token is not).
	TokenFile string `yaml:"token_file,omitempty" json:"token_file,omitempty"`
	// CAFile, CertFile and KeyFile set TLS towards Alertmanager.
	CAFile   string        `yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
	CertFile string        `yaml:"cert_file,omitempty" json:"cert_file,omitempty"`
	KeyFile  string        `yaml:"key_file,omitempty" json:"key_file,omitempty"`
	Timeout  time.Duration `yaml:"timeout" json:"timeout"`
	// HostMatcher selects one host's alerts; {host} stands for its name
	// (quoted for a regular expression with =~ and !~), such as
	// instance=~"{host}(:.*)?" or host="{host}".
	HostMatcher string `yaml:"host_matcher" json:"host_matcher"`
	// Matchers are added to every silence, such as severity!="critical".
	Matchers []string `yaml:"matchers,omitempty" json:"matchers,omitempty"`
	// SilenceDuration bounds a silence; Herd extends it while the host
	// stays in maintenance, so a silence outlives Herd by at most this.
	SilenceDuration time.Duration `yaml:"silence_duration" json:"silence_duration"`
	Webhook         AlertWebhook  `yaml:"webhook" json:"webhook"`
}

// Alert actions a webhook rule may take on the host an alert names.
const (
	AlertEvacuate     = "evacuate"      // maintenance with live migration of the running VMs
	AlertNotAccepting = "not-accepting" // admin status NOT_ACCEPTING
	AlertNote         = "note"          // an event only
)

// AlertWebhook maps the alerts Alertmanager sends to POST
// /v1/alerts/webhook to actions on hosts.
type AlertWebhook struct {
	// HostLabel is the alert label naming the host; a value host:port
	// names host.
	HostLabel string `yaml:"host_label" json:"host_label"`
	// MaxEvacuateShare: when more than this share of the hosts would be
	// in maintenance asked by alerts, new evacuations are refused (one
	// host always may be).
	MaxEvacuateShare float64       `yaml:"max_evacuate_share" json:"max_evacuate_share"`
	Actions          []AlertAction `yaml:"actions,omitempty" json:"actions,omitempty"`
}

// AlertAction is one rule: a firing alert whose name and labels match takes
// Action on its host; the first matching rule wins.
type AlertAction struct {
	// Alertname matches the alertname label exactly; empty matches any.
	Alertname string `yaml:"alertname,omitempty" json:"alertname,omitempty"`
	// Labels must all be equal on the alert.
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	Action string            `yaml:"action" json:"action"`
}

// Match reports whether an alert with labels is this rule's.
func (a AlertAction) Match(labels map[string]string) bool {
	if a.Alertname != "" && labels["alertname"] != a.Alertname {
		return false
	}
	for k, v := range a.Labels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Defaults of the alertmanager section.
const (
	DefaultAMTimeout          = 5 * time.Second
	DefaultAMHostMatcher      = `instance=~"{host}(:.*)?"`
	DefaultSilenceDuration    = time.Hour
	DefaultAlertHostLabel     = "instance"
	DefaultMaxEvacuateShare   = 0.25
	MinSilenceDuration        = time.Minute
	hostPlaceholder           = "{host}"
	alertmanagerSection       = "alertmanager"
	alertmanagerWebhookPrefix = alertmanagerSection + ".webhook"
)

// Matcher is one Alertmanager label matcher: name, operator (=, !=, =~,
// !~) and value.
type Matcher struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	IsRegex bool   `json:"isRegex"`
	IsEqual bool   `json:"isEqual"`
}

func (m Matcher) String() string {
	op := "="
	switch {
	case m.IsRegex && m.IsEqual:
		op = "=~"
	case m.IsRegex:
		op = "!~"
	case !m.IsEqual:
		op = "!="
	}
	return m.Name + op + strconv.Quote(m.Value)
}

var matcherRE = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$`)

// ParseMatcher reads name="value" with one of =, !=, =~, !~; the value may
// be quoted (Go or Alertmanager escapes) or bare.
func ParseMatcher(s string) (Matcher, error) {
	p := matcherRE.FindStringSubmatch(s)
	if p == nil {
		return Matcher{}, fmt.Errorf("%q is not a matcher such as name=\"value\" (operators =, !=, =~, !~)", s)
	}
	v := p[3]
	if strings.HasPrefix(v, `"`) {
		u, err := strconv.Unquote(v)
		if err != nil {
			return Matcher{}, fmt.Errorf("%q: the value is not a well-quoted string", s)
		}
		v = u
	}
	m := Matcher{Name: p[1], Value: v, IsRegex: strings.HasSuffix(p[2], "~"), IsEqual: !strings.HasPrefix(p[2], "!")}
	if m.IsRegex {
		if _, err := regexp.Compile("^(?:" + strings.ReplaceAll(v, hostPlaceholder, "h") + ")$"); err != nil {
			return Matcher{}, fmt.Errorf("%q: bad regular expression: %v", s, err)
		}
	}
	return m, nil
}

// HostMatcherFor is the policy's host matcher for host: {host} replaced by the
// name, quoted as a regular expression for =~ and !~.
func (a *AlertmanagerPolicy) HostMatcherFor(host string) (Matcher, error) {
	m, err := ParseMatcher(a.HostMatcher)
	if err != nil {
		return m, err
	}
	name := host
	if m.IsRegex {
		name = regexp.QuoteMeta(host)
	}
	m.Value = strings.ReplaceAll(m.Value, hostPlaceholder, name)
	return m, nil
}

// OwnAlerts keeps Herd's own alerts (every rule in
// configs/prometheus/herd-alerts.yml is named Herd…) out of the silences:
// the alerts about the evacuation itself, such as HerdMaintenanceError and
// HerdEvacuationStalled, must page while the host is silenced.
var OwnAlerts = Matcher{Name: "alertname", Value: "Herd.+", IsRegex: true, IsEqual: false}

// SilenceMatchers are the matchers of host's silence: the host matcher,
// the extra matchers, and the negative matcher that keeps Herd's own
// alerts out.
func (a *AlertmanagerPolicy) SilenceMatchers(host string) ([]Matcher, error) {
	hm, err := a.HostMatcherFor(host)
	if err != nil {
		return nil, err
	}
	out := []Matcher{hm}
	for _, s := range a.Matchers {
		m, err := ParseMatcher(s)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return append(out, OwnAlerts), nil
}

func setAlertmanagerDefaults(a *AlertmanagerPolicy, n node) {
	if a == nil {
		return
	}
	orDefault(n, "timeout", &a.Timeout, DefaultAMTimeout)
	orDefault(n, "host_matcher", &a.HostMatcher, DefaultAMHostMatcher)
	orDefault(n, "silence_duration", &a.SilenceDuration, DefaultSilenceDuration)
	w := n.get("webhook")
	orDefault(w, "host_label", &a.Webhook.HostLabel, DefaultAlertHostLabel)
	orDefault(w, "max_evacuate_share", &a.Webhook.MaxEvacuateShare, DefaultMaxEvacuateShare)
}

func normalizeAlertmanager(a *AlertmanagerPolicy) {
	if a == nil {
		return
	}
	if len(a.URLs) == 0 {
		a.URLs = nil
	}
	if len(a.Matchers) == 0 {
		a.Matchers = nil
	}
	if len(a.Webhook.Actions) == 0 {
		a.Webhook.Actions = nil
	}
	for i := range a.Webhook.Actions {
		if len(a.Webhook.Actions[i].Labels) == 0 {
			a.Webhook.Actions[i].Labels = nil
		}
	}
}

var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

func (c *checker) alertmanager(a *AlertmanagerPolicy) {
	if a == nil {
		return
	}
	const at = alertmanagerSection
	if len(a.URLs) == 0 && len(a.Webhook.Actions) == 0 {
		c.add(at, "sets neither urls (to silence hosts in maintenance) nor webhook.actions (to act on alerts)")
	}
	c.unique(at+".urls", a.URLs)
	for i, u := range a.URLs {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			c.add(fmt.Sprintf("%s.urls[%d]", at, i), "must be an http or https URL, such as http://alertmanager:9093; got %q", u)
		}
	}
	for key, f := range map[string]string{"token_file": a.TokenFile, "ca_file": a.CAFile, "cert_file": a.CertFile, "key_file": a.KeyFile} {
		if f != "" && !strings.HasPrefix(f, "/") {
			c.add(at+"."+key, "must be an absolute path, got %q", f)
		}
	}
	if (a.CertFile == "") != (a.KeyFile == "") {
		c.add(at+".key_file", "cert_file and key_file go together")
	}
	c.duration(at+".timeout", a.Timeout)
	c.durationAtLeast(at+".silence_duration", a.SilenceDuration, MinSilenceDuration)
	if m, err := ParseMatcher(a.HostMatcher); err != nil {
		c.add(at+".host_matcher", "%v", err)
	} else if !strings.Contains(m.Value, hostPlaceholder) {
		c.add(at+".host_matcher", "must contain {host} (the host's name), such as %s", DefaultAMHostMatcher)
	} else if !m.IsEqual {
		c.add(at+".host_matcher", "must select the host's alerts with = or =~, got %q", a.HostMatcher)
	}
	for i, s := range a.Matchers {
		if _, err := ParseMatcher(s); err != nil {
			c.add(fmt.Sprintf("%s.matchers[%d]", at, i), "%v", err)
		}
	}
	w := a.Webhook
	const wat = alertmanagerWebhookPrefix
	if !labelNameRE.MatchString(w.HostLabel) {
		c.add(wat+".host_label", "must be a label name such as instance or host, got %q", w.HostLabel)
	}
	if !(w.MaxEvacuateShare > 0 && w.MaxEvacuateShare <= 1) {
		c.add(wat+".max_evacuate_share", "must be above 0 and at most 1, got %v", w.MaxEvacuateShare)
	}
	for i, r := range w.Actions {
		p := fmt.Sprintf("%s.actions[%d]", wat, i)
		c.oneOf(p+".action", r.Action, AlertEvacuate, AlertNotAccepting, AlertNote)
		if r.Alertname == "" && len(r.Labels) == 0 {
			c.add(p, "matches every alert: set alertname or labels")
		}
		for k := range r.Labels {
			if !labelNameRE.MatchString(k) {
				c.add(p+".labels."+k, "%q is not a label name", k)
			}
		}
	}
}

// NewAlertmanagerPolicy returns an alertmanager section with every default,
// for a document built in code.
func NewAlertmanagerPolicy(urls ...string) *AlertmanagerPolicy {
	a := &AlertmanagerPolicy{URLs: urls}
	setAlertmanagerDefaults(a, node{})
	return a
}
