package httpapi

import (
	"context"
	"net"
	"net/http"
	"strings"

	"github.com/herd-project/herd/daemon/config"
)

type principalKey struct{}

// PrincipalOf returns the authenticated caller of a request, if any.
func PrincipalOf(r *http.Request) (config.Principal, bool) {
	p, ok := r.Context().Value(principalKey{}).(config.Principal)
	return p, ok
}

// BearerToken extracts the token of an "Authorization: Bearer …" header.
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// authorize wraps h: without auth configured (dev mode) everything passes;
// otherwise the request needs a known token whose role is at least need.
// The caller is put in the request context for Actor.
func (rt *Router) authorize(need config.Role, h http.Handler) http.Handler {
	tokens := rt.o.Tokens
	if tokens == nil || need == config.RoleNone {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := BearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="herd"`)
			writeError(w, http.StatusUnauthorized, "", "an API token is required (Authorization: Bearer …; the CLI reads HERD_TOKEN or --token)")
			return
		}
		p, ok := tokens.Lookup(tok)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="herd", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "", "unknown API token")
			return
		}
		if p.Role < need {
			writeError(w, http.StatusForbidden, "", "token %q has role %s; %s %s needs %s", p.Name, p.Role, r.Method, r.URL.Path, need)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// Actor names who asked for a change: the token's name, or without auth
// (dev mode) the remote address.
func Actor(r *http.Request) string {
	if p, ok := PrincipalOf(r); ok {
		return "token:" + p.Name
	}
	if by := r.Header.Get(ForwardedHeader); by != "" {
		return "api:" + r.Header.Get("X-Forwarded-For") + " via " + by
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	return "api:" + host
}
