package httpapi

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/herd-project/herd/daemon/config"
)

// maxClients bounds how many clients the write limiter remembers.
const maxClients = 10000

// WriteLimiter is a token bucket per client (golang.org/x/time/rate): rate
// tokens a second, at most burst saved up.
type WriteLimiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// NewWriteLimiter allows r writes a second per client, burst at once (r 0:
// no limit).
func NewWriteLimiter(r float64, burst int) *WriteLimiter {
	return &WriteLimiter{rate: r, burst: float64(burst), now: time.Now, buckets: map[string]*rate.Limiter{}}
}

// allow takes a token from key's bucket; when there is none it says how
// long until there is.
func (l *WriteLimiter) allow(key string) (bool, time.Duration) {
	if l.rate <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxClients {
			l.evict(now)
		}
		b = rate.NewLimiter(rate.Limit(l.rate), int(l.burst))
		l.buckets[key] = b
	}
	if b.AllowN(now, 1) {
		return true, 0
	}
	return false, time.Duration((1 - b.TokensAt(now)) / l.rate * float64(time.Second))
}

// evict forgets clients whose bucket has refilled (they would start full
// anyway); if none has, it forgets all, which only forgives.
func (l *WriteLimiter) evict(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= l.burst {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= maxClients {
		clear(l.buckets)
	}
}

// clientKey names who a write counts against: the token's holder, or the
// remote address without auth.
func clientKey(r *http.Request) string {
	if p, ok := PrincipalOf(r); ok {
		return "token:" + p.Name
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "addr:" + host
}

// limitWrites answers 429 with Retry-After when a client writes too fast.
func (rt *Router) limitWrites(h http.Handler) http.Handler {
	l := rt.o.Limiter
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := PrincipalOf(r); ok && p.Name == config.ServerTokenName {
			// Servers' own calls (joins, events, policy reloads) are
			// not throttled.
			h.ServeHTTP(w, r)
			return
		}
		ok, wait := l.allow(clientKey(r))
		if !ok {
			secs := int(math.Ceil(wait.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			writeError(w, http.StatusTooManyRequests, "", "too many writes from this client: at most %g a second (burst %g); retry in %ds", l.rate, l.burst, max(secs, 1))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// pathParams are the path wildcards of the API routes.
var pathParams = []string{"host", "vm", "id"}

// maxParamLen bounds a host, VM or operation id in a path.
const maxParamLen = 255

// checkPathParams refuses path parameters that are too long, not UTF-8 or
// hold control characters, naming the parameter.
func checkPathParams(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, name := range pathParams {
			if err := checkParam(r.PathValue(name)); err != nil {
				writeError(w, http.StatusBadRequest, name, "%s: %v", name, err)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func checkParam(v string) error {
	if len(v) > maxParamLen {
		return fmt.Errorf("longer than %d bytes", maxParamLen)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("not valid UTF-8")
	}
	for _, c := range v {
		if unicode.IsControl(c) {
			return fmt.Errorf("contains a control character (%U)", c)
		}
	}
	return nil
}
