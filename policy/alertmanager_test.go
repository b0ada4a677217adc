package policy

import (
	"reflect"
	"strings"
	"testing"
)

func TestAlertmanagerSectionErrorsNameTheField(t *testing.T) {
	head := "apiVersion: herd/v1\nkind: Policy\nalertmanager:\n"
	for _, tc := range []struct{ body, want string }{
		{"  urls: [ftp://am]\n", `alertmanager.urls[0]: must be an http or https URL`},
		{"  timeout: 1s\n", "alertmanager: sets neither urls"},
		{"  urls: [http://a:9093, http://a:9093]\n", "alertmanager.urls"},
		{"  urls: [http://a:9093]\n  token_file: token\n", "alertmanager.token_file: must be an absolute path"},
		{"  urls: [http://a:9093]\n  cert_file: /c.pem\n", "alertmanager.key_file: cert_file and key_file go together"},
		{"  urls: [http://a:9093]\n  host_matcher: instance=\"x\"\n", "alertmanager.host_matcher: must contain {host}"},
		{"  urls: [http://a:9093]\n  host_matcher: host!=\"{host}\"\n", "alertmanager.host_matcher: must select the host's alerts with = or =~"},
		{"  urls: [http://a:9093]\n  host_matcher: instance=~\"{host}(\"\n", "alertmanager.host_matcher: \"instance=~\\\"{host}(\\\"\": bad regular expression"},
		{"  urls: [http://a:9093]\n  matchers: ['severity']\n", "alertmanager.matchers[0]: \"severity\" is not a matcher"},
		{"  urls: [http://a:9093]\n  silence_duration: 30s\n", "alertmanager.silence_duration: must be at least 1m0s"},
		{"  webhook:\n    actions: [{alertname: X, action: evacuat}]\n", `alertmanager.webhook.actions[0].action: must be one of evacuate, not-accepting, note; got "evacuat" (did you mean "evacuate"?)`},
		{"  webhook:\n    actions: [{action: note}]\n", "alertmanager.webhook.actions[0]: matches every alert"},
		{"  webhook:\n    max_evacuate_share: 0\n    actions: [{alertname: X, action: note}]\n", "alertmanager.webhook.max_evacuate_share: must be above 0 and at most 1"},
		{"  webhook:\n    host_label: 'a-b'\n    actions: [{alertname: X, action: note}]\n", "alertmanager.webhook.host_label: must be a label name"},
		{"  urls: [http://a:9093]\n  token: secret\n", "token"},
	} {
		_, err := Parse("p.yaml", []byte(head+tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error containing %q", tc.body, err, tc.want)
		}
	}
}

func TestAlertmanagerSectionDefaultsAndRoundTrip(t *testing.T) {
	d, err := Parse("p.yaml", []byte("apiVersion: herd/v1\nkind: Policy\nalertmanager:\n  urls: [http://am1:9093, http://am2:9093]\n"+
		"  matchers: ['severity!=\"info\"']\n  webhook:\n    actions:\n      - alertname: NodeECC\n        labels: {severity: critical}\n        action: evacuate\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := d.Alertmanager
	if a.HostMatcher != DefaultAMHostMatcher || a.SilenceDuration != DefaultSilenceDuration || a.Webhook.HostLabel != "instance" ||
		a.Webhook.MaxEvacuateShare != DefaultMaxEvacuateShare || a.Timeout != DefaultAMTimeout {
		t.Errorf("defaults: %+v", a)
	}
	y, err := d.YAML()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("canonical", y)
	if err != nil {
		t.Fatalf("canonical form does not parse: %v\n%s", err, y)
	}
	if !reflect.DeepEqual(d, back) {
		t.Errorf("round trip changed the document:\n%s", y)
	}
	if !strings.Contains(string(y), "silence_duration: 1h\n") {
		t.Errorf("durations are written short:\n%s", y)
	}
	if Default().Alertmanager != nil {
		t.Error("the default policy talks to no Alertmanager")
	}
}

func TestSilenceMatchers(t *testing.T) {
	for _, tc := range []struct {
		tmpl, host string
		want       []string
	}{
		{DefaultAMHostMatcher, "esx01.example.com", []string{`instance=~"esx01\\.example\\.com(:.*)?"`, `severity!="info"`, `alertname!~"Herd.+"`}},
		{`host="{host}"`, "esx01.example.com", []string{`host="esx01.example.com"`, `severity!="info"`, `alertname!~"Herd.+"`}},
		{`node = {host}`, "n1", []string{`node="n1"`, `severity!="info"`, `alertname!~"Herd.+"`}},
	} {
		a := NewAlertmanagerPolicy("http://am:9093")
		a.HostMatcher, a.Matchers = tc.tmpl, []string{`severity!="info"`}
		ms, err := a.SilenceMatchers(tc.host)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range ms {
			got = append(got, m.String())
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s for %s: got %v, want %v", tc.tmpl, tc.host, got, tc.want)
		}
	}
	a := AlertAction{Alertname: "NodeECC", Labels: map[string]string{"severity": "critical"}}
	if !a.Match(map[string]string{"alertname": "NodeECC", "severity": "critical", "instance": "x"}) || a.Match(map[string]string{"alertname": "NodeECC"}) {
		t.Error("a rule matches its alert name and every label it lists")
	}
}
