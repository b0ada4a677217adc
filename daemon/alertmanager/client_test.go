package alertmanager

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herd-project/herd/internal/testutil"
	"github.com/herd-project/herd/policy"
)

// The client sends the token from token_file, goes on to the next member
// when one does not answer, and takes a 4xx as final.
func TestClientTokenAndMembers(t *testing.T) {
	var gotAuth string
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		gotAuth = r.Header.Get("Authorization")
		switch r.URL.Path {
		case "/api/v2/silences":
			w.Write([]byte(`{"silenceID":"s1"}`))
		case "/api/v2/silence/gone":
			http.Error(w, "not found", http.StatusNotFound)
		default:
			http.Error(w, "bad matchers", http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := policy.NewAlertmanagerPolicy("http://"+testutil.FreePort(t), srv.URL)
	p.TokenFile = tok
	p.Timeout = 2 * time.Second
	c, err := NewClient(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id, err := c.PostSilence(ctx, Silence{CreatedBy: CreatedBy})
	if err != nil || id != "s1" {
		t.Fatalf("post through the second member: %q %v", id, err)
	}
	if gotAuth != "Bearer s3cret" {
		t.Errorf("Authorization %q, want the token file's bearer token", gotAuth)
	}
	if err := c.ExpireSilence(ctx, "gone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("expire of an unknown silence: %v, want ErrNotFound", err)
	}
	before := calls
	if err := c.do(ctx, http.MethodPost, "/api/v2/other", nil, nil); err == nil || calls != before+1 {
		t.Errorf("a 4xx is final: err %v after %d calls", err, calls-before)
	}
	p.TokenFile = filepath.Join(t.TempDir(), "missing")
	if _, err := NewClient(p); err == nil {
		t.Error("a missing token file is an error naming alertmanager.token_file")
	}
}
