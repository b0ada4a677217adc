package daemon

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/internal/testutil"
)

// TestAuditLogRefusesForgedEvents: through the API an operator writes
// notes whose actor is the token; Herd's own event types and actors are
// refused, and host and VM references are checked. Only the servers'
// internal token records other types (a follower's own events).
func TestAuditLogRefusesForgedEvents(t *testing.T) {
	dev, _ := startAuthDev(t, nil)
	base := dev.APIAddr()
	c := client(t, base, readToken)
	var hosts []api.Host
	testutil.WaitFor(t, 20*time.Second, "inventory", func() bool {
		hosts, _ = c.Hosts(context.Background())
		return len(hosts) == 2
	})
	h := hosts[0].Name
	tests := []struct {
		name, token, body string
		code              int
		field             string
	}{
		{"forged system type", opToken, `{"type":"host.fenced","host":"` + h + `","message":"fenced"}`, 403, "type"},
		{"forged system type and actor", opToken, `{"type":"host.fenced","actor":"herd","message":"fenced"}`, 403, "type"},
		{"note with a named actor", opToken, `{"type":"note","actor":"herd","message":"hello"}`, 403, "actor"},
		{"admin may not forge either", adminToken, `{"type":"operation.cancelled","message":"x"}`, 403, "type"},
		{"unknown host", opToken, `{"type":"note","host":"nohost","message":"x"}`, 404, "host"},
		{"unknown vm", opToken, `{"type":"note","vm":"novm","message":"x"}`, 404, "vm"},
		{"note", opToken, `{"type":"note","host":"` + h + `","message":"rack 4 cabling checked"}`, 201, ""},
		{"type defaults to note", opToken, `{"message":"no type"}`, 201, ""},
		{"servers record their own", serverToken, `{"type":"policy.reload_failed","actor":"server:s2","message":"bad file"}`, 201, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := send(t, "POST", base+"/v1/events", tt.token, tt.body)
			if code != tt.code {
				t.Fatalf("code %d, want %d: %s", code, tt.code, body)
			}
			if tt.field != "" {
				var e api.Error
				if json.Unmarshal([]byte(body), &e) != nil || e.Field != tt.field {
					t.Fatalf("error %s does not name field %q", body, tt.field)
				}
			}
		})
	}
	ev, err := c.Events(context.Background(), api.EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ev.Events {
		switch {
		case e.Type == "host.fenced" || e.Type == "operation.cancelled":
			t.Errorf("forged event stored: %+v", e)
		case e.Type == "note" && e.Actor != "token:ci":
			t.Errorf("note actor %q, want the token's name token:ci", e.Actor)
		}
	}
}

// TestAPIRefusesControlCharacters: free text with an escape sequence, a
// bell, a NUL or a line break is refused naming the field; a tab is fine.
func TestAPIRefusesControlCharacters(t *testing.T) {
	dev, _ := startDev(t, 2, 2)
	base := dev.APIAddr()
	var hosts []api.Host
	testutil.WaitFor(t, 20*time.Second, "inventory", func() bool {
		hosts, _ = client(t, base, "").Hosts(context.Background())
		return len(hosts) == 2
	})
	h := hosts[0].Name
	tests := []struct {
		name, method, path, body string
		code                     int
		field                    string
	}{
		{"terminal title in a reason", "PUT", "/v1/hosts/" + h + "/status", `{"status":"NOT_ACCEPTING","reason":"\u001b]0;pwned\u0007"}`, 400, "reason"},
		{"NUL in a message", "POST", "/v1/events", `{"type":"note","message":"a\u0000b"}`, 400, "message"},
		{"newline in a message", "POST", "/v1/events", `{"type":"note","message":"line1\nFAKE 00:00 host.fenced"}`, 400, "message"},
		{"C1 control in a message", "POST", "/v1/events", `{"type":"note","message":"a\u009bb"}`, 400, "message"},
		{"escape in a VM list", "PUT", "/v1/hosts/" + h + "/maintenance", `{"status":"enable","shutdown_vms":["ok","\u001b[2J"]}`, 400, "shutdown_vms[1]"},
		{"tab is fine", "POST", "/v1/events", `{"type":"note","message":"a\tb"}`, 201, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := send(t, tt.method, base+tt.path, "", tt.body)
			if code != tt.code {
				t.Fatalf("code %d, want %d: %s", code, tt.code, body)
			}
			var e api.Error
			if tt.field != "" && (json.Unmarshal([]byte(body), &e) != nil || e.Field != tt.field) {
				t.Fatalf("error %s does not name field %q", body, tt.field)
			}
		})
	}
	st := dev.Node().FSM().State()
	if st.Hosts[h].AdminReason != "" {
		t.Errorf("refused reason stored: %q", st.Hosts[h].AdminReason)
	}
	for _, e := range st.Events {
		if strings.ContainsAny(e.Message, "\x00\x1b\n\u009b") {
			t.Errorf("control character stored in event %q", e.Message)
		}
	}
}
