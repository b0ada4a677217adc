package metrics

import "github.com/prometheus/client_golang/prometheus"

// Alertmanager holds the collectors of Herd's work with Alertmanager.
type Alertmanager struct {
	// Errors counts failed calls to Alertmanager by op (list, create,
	// expire, config).
	Errors *prometheus.CounterVec
	// WebhookAlerts counts the alerts Alertmanager's webhook delivered,
	// by action (evacuate, not-accepting, note, none) and result.
	WebhookAlerts *prometheus.CounterVec
	// EvacuationsRefused counts alert evacuations refused by the storm
	// guard (alertmanager.webhook.max_evacuate_share).
	EvacuationsRefused prometheus.Counter
}

// NewAlertmanager creates and registers the Alertmanager collectors on reg.
func NewAlertmanager(reg prometheus.Registerer) *Alertmanager {
	m := &Alertmanager{
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_alertmanager_errors_total",
			Help: "Failed calls to Alertmanager while keeping the silences of hosts in maintenance, by op (list, create, expire, config); they are retried with backoff.",
		}, []string{"op"}),
		WebhookAlerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_alert_webhook_alerts_total",
			Help: "Alerts received on the Alertmanager webhook, by action (evacuate, not-accepting, note, none) and result (done, unchanged, repeat, blocked, resolved, no_rule).",
		}, []string{"action", "result"}),
		EvacuationsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_alert_evacuations_refused_total",
			Help: "Evacuations asked by alerts and refused because more than alertmanager.webhook.max_evacuate_share of the hosts would be out at once.",
		}),
	}
	reg.MustRegister(m.Errors, m.WebhookAlerts, m.EvacuationsRefused)
	return m
}
