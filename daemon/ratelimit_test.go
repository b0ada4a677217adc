package daemon

import (
	"strings"
	"testing"

	"github.com/herd-project/herd/daemon/config"
)

func TestWriteRateLimit429(t *testing.T) {
	dev, _ := startAuthDev(t, func(c *config.Server) { c.API.WriteRate, c.API.WriteBurst = 0.5, 2 })
	base := dev.APIAddr()
	waitInventory(t, client(t, base, readToken), 2, 2)
	body := `{"type":"note","message":"rate"}`
	for i := 0; i < 2; i++ {
		if code, _, b := send(t, "POST", base+"/v1/events", opToken, body); code != 201 {
			t.Fatalf("write %d: %d %s", i+1, code, b)
		}
	}
	code, h, b := send(t, "POST", base+"/v1/events", opToken, body)
	if code != 429 || h.Get("Retry-After") != "2" || !strings.Contains(b, "too many writes") {
		t.Fatalf("third write: %d Retry-After=%q %s", code, h.Get("Retry-After"), b)
	}
	// Reads are not limited, and another token has its own bucket.
	if code, _, _ := send(t, "GET", base+"/v1/hosts", opToken, ""); code != 200 {
		t.Fatalf("read while writes are limited: %d", code)
	}
	if code, _, b := send(t, "POST", base+"/v1/events", adminToken, body); code != 201 {
		t.Fatalf("another token's write: %d %s", code, b)
	}
}

func TestPathParamsValidated(t *testing.T) {
	_, c := startDev(t, 1, 1)
	waitInventory(t, c, 1, 1)
	long := strings.Repeat("h", 256)
	checkErrorAnswers(t, c.Base, []errorCase{
		{"long host", "GET", "/v1/hosts/" + long, "", 400, "host"},
		{"control character in host", "PUT", "/v1/hosts/a%01b/status", `{"status":"AVAILABLE"}`, 400, "host"},
		{"newline in host", "GET", "/v1/hosts/a%0Ab/maintenance/exit-precheck", "", 400, "host"},
		{"invalid UTF-8 vm", "POST", "/v1/vms/%FF%FE/migrate", `{"target_host":"x"}`, 400, "vm"},
		{"long operation id", "POST", "/v1/operations/" + long + "/cancel", `{}`, 400, "id"},
		{"DEL in operation id", "GET", "/v1/operations/x%7Fy", "", 400, "id"},
		{"255 bytes is fine", "GET", "/v1/hosts/" + long[:255], "", 404, "host"},
		{"body over 1 MiB", "POST", "/v1/events", `{"type":"note","message":"` + strings.Repeat("x", 1<<20) + `"}`, 413, ""},
		{"unknown body field", "POST", "/v1/events", `{"type":"note","message":"m","admin":true}`, 400, "admin"},
	})
}
