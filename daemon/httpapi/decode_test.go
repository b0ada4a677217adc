package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/herd-project/herd/daemon/api"
)

// bodyTypes are the API request bodies DecodeBody reads.
var bodyTypes = []func() any{
	func() any { return &api.StatusRequest{} },
	func() any { return &api.MaintenanceRequest{} },
	func() any { return &api.MigrateRequest{} },
	func() any { return &api.EventRequest{} },
	func() any { return &api.JoinRequest{} },
}

// FuzzDecodeBody: the strict JSON decoder never panics, refuses with a
// 4xx JSON error, and what it accepts survives a round trip.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{
		`{"status":"NOT_ACCEPTING","reason":"disk","confirm_fenced":false}`,
		`{"status":"enable","migrate":"all","target_host":"h2","shutdown_vms":["a","b"]}`,
		`{"status":"disable","poweron_vms":["x"],"live_migrate_back_vms":[],"offline_migrate_back_vms":["y"]}`,
		`{"target_host":"h1"}`,
		`{"type":"note","host":"h1","vm":"v","message":"m","actor":"me"}`,
		`{"id":"s2","raft_addr":"127.0.0.1:7421","api_addr":"http://127.0.0.1:7420"}`,
		`{"status":1}`, `{} {}`, ``, `[`, `{"colour":"red"}`, "{\"status\":\"\\u0000\"}",
	} {
		for i := range bodyTypes {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		v := bodyTypes[int(which)%len(bodyTypes)]()
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/x", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		if err := DecodeBody(r, v); err != nil {
			WriteErr(w, err)
			if w.Code < 400 || w.Code > 499 {
				t.Fatalf("refusal with status %d", w.Code)
			}
			var e api.Error
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("refusal body %q is not a JSON error: %v", w.Body.String(), err)
			}
			return
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("accepted value does not encode: %v", err)
		}
		r2 := httptest.NewRequest(http.MethodPost, "/v1/x", bytes.NewReader(again))
		v2 := reflect.New(reflect.TypeOf(v).Elem()).Interface()
		if err := DecodeBody(r2, v2); err != nil {
			t.Fatalf("re-encoded %s refused: %v", again, err)
		}
		// omitempty makes [] and null the same; the encoding is the
		// fixed point.
		third, err := json.Marshal(v2)
		if err != nil || !bytes.Equal(again, third) {
			t.Fatalf("round trip changed the value (%v):\n%s\n%s", err, again, third)
		}
	})
}
