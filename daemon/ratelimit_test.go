package daemon

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/config"
)

func TestWriteLimiterBuckets(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newWriteLimiter(2, 3)
	l.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if ok, _ := l.allow("a"); !ok {
			t.Fatalf("write %d within the burst refused", i+1)
		}
	}
	ok, wait := l.allow("a")
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("beyond the burst: ok=%v wait=%s, want refused, 500ms", ok, wait)
	}
	if ok, _ := l.allow("b"); !ok {
		t.Fatal("another client was limited by the first one's writes")
	}
	now = now.Add(500 * time.Millisecond)
	if ok, _ := l.allow("a"); !ok {
		t.Fatal("a token did not come back after 1/rate")
	}
	if ok, _ := l.allow("a"); ok {
		t.Fatal("more than one token came back")
	}
	// The table of clients stays bounded.
	for i := 0; i < maxClients+10; i++ {
		now = now.Add(time.Millisecond)
		l.allow("c" + strconv.Itoa(i))
	}
	if len(l.buckets) > maxClients {
		t.Fatalf("%d clients remembered, bound %d", len(l.buckets), maxClients)
	}
	if ok, _ := newWriteLimiter(0, 1).allow("x"); !ok {
		t.Fatal("rate 0 (off) refused a write")
	}
}

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
