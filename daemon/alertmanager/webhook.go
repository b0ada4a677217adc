package alertmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/alertmanager/template"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/metrics"
	"github.com/herd-project/herd/policy"
)

// Message is the body Alertmanager's webhook receiver posts (version 4):
// the template data of one notification and the group it is for.
type Message struct {
	*template.Data
	Version         string `json:"version"`
	GroupKey        string `json:"groupKey"`
	TruncatedAlerts uint64 `json:"truncatedAlerts"`
}

// Actions are what alerts may do to hosts; the daemon implements them with
// the same paths people and the health controller use. Each says what it
// did ("unchanged: …" when there was nothing to do).
type Actions interface {
	// Evacuate takes a host into maintenance with live migration of its
	// running VMs, as the health controller does for degraded_query.
	Evacuate(ctx context.Context, host, why string) (string, error)
	// NotAccepting sets an AVAILABLE host NOT_ACCEPTING.
	NotAccepting(ctx context.Context, host, why string) (string, error)
	// Note records an event on the host.
	Note(ctx context.Context, host, why string) (string, error)
}

// Error is a refused delivery: nothing changed.
type Error struct {
	Code  int
	Field string
	Msg   string
}

func (e *Error) Error() string { return e.Msg }

// AlertResult says what one alert of a delivery did.
type AlertResult struct {
	Alert       string `json:"alert"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Status      string `json:"status"`
	Host        string `json:"host,omitempty"`
	Action      string `json:"action"`
	Result      string `json:"result"`
}

// Result is the answer to a delivery.
type Result struct {
	Alerts []AlertResult `json:"alerts"`
}

// Webhook turns Alertmanager's notifications into host actions by the
// policy's alertmanager.webhook.actions. A delivery is checked whole
// before anything is done: a malformed payload, or an alert for a host
// Herd does not know, is refused and changes nothing. Resolved alerts undo
// nothing; a repeated firing alert (same fingerprint and start) changes
// nothing; more than max_evacuate_share of the hosts out at the alerts'
// request is refused and reported.
type Webhook struct {
	store   Store
	policy  func() *policy.Document
	actions Actions
	metrics *metrics.Alertmanager
	log     *slog.Logger
	// mu serialises deliveries: the storm count of one sees what the one
	// before started.
	mu sync.Mutex
}

// NewWebhook builds the receiver; actions carry out what alerts ask.
func NewWebhook(d Deps, actions Actions) *Webhook {
	return &Webhook{store: d.Store, policy: d.Policy, actions: actions, metrics: d.Metrics, log: d.Log.With("component", "alert-webhook")}
}

// planned is one alert's checked action.
type planned struct {
	res  AlertResult
	key  string // names the alert in events: a repeat finds it there
	rule *policy.AlertAction
}

func bad(code int, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Handle acts on one delivery.
func (w *Webhook) Handle(ctx context.Context, body []byte, who string) (*Result, *Error) {
	var msg Message
	if err := json.Unmarshal(body, &msg); err != nil {
		return nil, bad(http.StatusBadRequest, "", "not an Alertmanager webhook payload: %v", err)
	}
	if msg.Version != "4" {
		return nil, bad(http.StatusBadRequest, "version", "version %q: Herd reads Alertmanager's webhook payload version 4", msg.Version)
	}
	if msg.Data == nil || len(msg.Alerts) == 0 {
		return nil, bad(http.StatusBadRequest, "alerts", "the payload holds no alerts")
	}
	doc := w.policy()
	if doc == nil || doc.Alertmanager == nil || len(doc.Alertmanager.Webhook.Actions) == 0 {
		return nil, bad(http.StatusConflict, "alertmanager.webhook.actions", "the policy maps no alerts to actions: set alertmanager.webhook.actions")
	}
	wh := doc.Alertmanager.Webhook
	w.mu.Lock()
	defer w.mu.Unlock()
	var plan []planned
	var perr *Error
	w.store.Read(func(st *cluster.State) {
		plan, perr = w.check(st, msg, wh)
		if perr == nil {
			perr = w.stormGuard(st, plan, wh)
		}
	})
	if perr != nil {
		if perr.Code == http.StatusConflict && perr.Field == "alerts" {
			w.refuse(ctx, plan, perr.Msg)
		}
		return nil, perr
	}
	out := &Result{}
	for _, p := range plan {
		if p.rule != nil && p.res.Result == "" {
			why := fmt.Sprintf("%s (asked by %s)", p.key, who)
			var err error
			switch p.rule.Action {
			case policy.AlertEvacuate:
				p.res.Result, err = w.actions.Evacuate(ctx, p.res.Host, why)
			case policy.AlertNotAccepting:
				p.res.Result, err = w.actions.NotAccepting(ctx, p.res.Host, why)
			case policy.AlertNote:
				p.res.Result, err = w.actions.Note(ctx, p.res.Host, why)
			}
			if err != nil {
				// Alertmanager tries a 5xx again; what was done is
				// found done then.
				return nil, bad(http.StatusServiceUnavailable, "", "%s on %s: not committed: %v", p.rule.Action, p.res.Host, err)
			}
		}
		w.metrics.WebhookAlerts.WithLabelValues(p.res.Action, resultLabel(p.res.Result)).Inc()
		out.Alerts = append(out.Alerts, p.res)
	}
	return out, nil
}

func resultLabel(r string) string {
	if r == repeatResult {
		return "repeat"
	}
	head, _, _ := strings.Cut(r, ":")
	switch head {
	case "evacuating", "not accepting", "noted":
		return "done"
	case "unchanged", "blocked", "resolved", "no rule":
		return strings.ReplaceAll(head, " ", "_")
	}
	return "done"
}

// check validates the whole delivery and plans each alert's action.
func (w *Webhook) check(st *cluster.State, msg Message, wh policy.AlertWebhook) ([]planned, *Error) {
	var plan []planned
	for i, a := range msg.Alerts {
		at := fmt.Sprintf("alerts[%d]", i)
		name := a.Labels["alertname"]
		if name == "" {
			return nil, bad(http.StatusBadRequest, at+".labels.alertname", "%s has no alertname label", at)
		}
		p := planned{res: AlertResult{Alert: name, Fingerprint: a.Fingerprint, Status: a.Status, Action: "none"}}
		for j := range wh.Actions {
			if wh.Actions[j].Match(a.Labels) {
				p.rule = &wh.Actions[j]
				p.res.Action = p.rule.Action
				break
			}
		}
		switch a.Status {
		case "firing":
		case "resolved":
			p.res.Result = "resolved: nothing is undone"
		default:
			return nil, bad(http.StatusBadRequest, at+".status", "%s status %q is not firing or resolved", at, a.Status)
		}
		if p.rule == nil {
			p.res.Result = "no rule: alertmanager.webhook.actions matches no rule for it"
			plan = append(plan, p)
			continue
		}
		field := at + ".labels." + wh.HostLabel
		v := a.Labels[wh.HostLabel]
		if v == "" {
			return nil, bad(http.StatusBadRequest, field, "%s (%s) has no %s label naming its host (alertmanager.webhook.host_label)", at, name, wh.HostLabel)
		}
		host := hostOf(st, v)
		if host == "" {
			return nil, bad(http.StatusNotFound, field, "%s (%s): host %q not found", at, name, v)
		}
		p.res.Host = host
		p.key = fmt.Sprintf("alert %s [%s] firing since %s", name, a.Fingerprint, a.StartsAt.UTC().Format(time.RFC3339))
		if p.res.Result == "" && repeated(st, host, p.key) {
			p.res.Result = repeatResult
		}
		plan = append(plan, p)
	}
	return plan, nil
}

// hostOf finds the host a label value names: the value itself, or its
// host part when it is host:port.
func hostOf(st *cluster.State, v string) string {
	if st.Hosts[v] != nil {
		return v
	}
	if h, _, err := net.SplitHostPort(v); err == nil && st.Hosts[h] != nil {
		return h
	}
	return ""
}

const repeatResult = "unchanged: this alert was acted on before"

// actedTypes are the events an alert's action leaves.
var actedTypes = map[string]bool{"maintenance.entering": true, "host.status": true, EventNote: true}

// EventNote is the event of a note action.
const EventNote = "alert.note"

// repeated reports whether an event of host already names the alert
// (key): a repeated delivery, or one after the host left the
// maintenance the alert asked for, changes nothing.
func repeated(st *cluster.State, host, key string) bool {
	for _, e := range st.QueryEvents(cluster.EventFilter{Host: host}) {
		// Blocked evacuations are not acts: a repeat tries again.
		if actedTypes[e.Type] && strings.Contains(e.Message, key) {
			return true
		}
	}
	return false
}

// stormGuard refuses a delivery that would take more than the policy's
// share of the hosts out at the alerts' request (one host always may be).
func (w *Webhook) stormGuard(st *cluster.State, plan []planned, wh policy.AlertWebhook) *Error {
	out := map[string]bool{}
	for name, h := range st.Hosts {
		if h.Maintenance == cluster.MaintenanceOff || h.Maintenance == "" {
			continue
		}
		if op := st.Operations[h.Operation]; op != nil && op.Actor == Actor {
			out[name] = true
		}
	}
	var asked []string
	for _, p := range plan {
		if p.rule == nil || p.rule.Action != policy.AlertEvacuate || p.res.Result != "" || out[p.res.Host] {
			continue
		}
		if h := st.Hosts[p.res.Host]; h.Maintenance != cluster.MaintenanceOff {
			continue
		}
		if !contains(asked, p.res.Host) {
			asked = append(asked, p.res.Host)
		}
	}
	if len(asked) == 0 {
		return nil
	}
	limit := max(1, int(wh.MaxEvacuateShare*float64(len(st.Hosts))))
	if len(out)+len(asked) <= limit {
		return nil
	}
	sort.Strings(asked)
	return bad(http.StatusConflict, "alerts", "refused: alerts ask to evacuate %s while %d host(s) are already out at the alerts' request; more than %d of %d hosts (alertmanager.webhook.max_evacuate_share %v) out at once looks like a storm, not failing hardware: nothing was done",
		strings.Join(asked, ", "), len(out), limit, len(st.Hosts), wh.MaxEvacuateShare)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// refuse counts and records a delivery the storm guard refused.
func (w *Webhook) refuse(ctx context.Context, plan []planned, msg string) {
	n := 0
	for _, p := range plan {
		if p.rule != nil && p.rule.Action == policy.AlertEvacuate && p.res.Result == "" {
			n++
		}
	}
	w.metrics.EvacuationsRefused.Add(float64(n))
	ev := cluster.NewEvent("alert.storm", Actor, "", "", msg)
	if _, err := w.store.Apply(ctx, &cluster.AppendEvents{Events: []cluster.Event{ev}}); err != nil {
		w.log.Warn("record refused alert evacuations", "err", err)
	}
}
