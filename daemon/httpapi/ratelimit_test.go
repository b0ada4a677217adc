package httpapi

import (
	"strconv"
	"testing"
	"time"
)

func TestWriteLimiterBuckets(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewWriteLimiter(2, 3)
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
	if ok, _ := NewWriteLimiter(0, 1).allow("x"); !ok {
		t.Fatal("rate 0 (off) refused a write")
	}
}
