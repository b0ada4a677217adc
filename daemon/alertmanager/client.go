// Package alertmanager connects Herd to Alertmanager both ways: a leader
// controller keeps a silence for every host in maintenance (its ids in the
// replicated state), and a webhook receiver turns alerts into host actions
// by policy.
package alertmanager

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/herd-project/herd/policy"
)

// The silence part of Alertmanager's API v2, typed here: the generated
// client (api/v2/client) would bring go-openapi's runtime, validators and
// OpenTelemetry into Herd for three JSON calls.

// Silence is a silence as API v2 reads and writes it.
type Silence struct {
	ID        string           `json:"id,omitempty"`
	Matchers  []policy.Matcher `json:"matchers"`
	StartsAt  time.Time        `json:"startsAt"`
	EndsAt    time.Time        `json:"endsAt"`
	CreatedBy string           `json:"createdBy"`
	Comment   string           `json:"comment"`
	Status    *SilenceStatus   `json:"status,omitempty"`
}

// SilenceStatus is active, pending or expired.
type SilenceStatus struct {
	State string `json:"state"`
}

// Active reports whether the silence silences now or will.
func (s Silence) Active() bool {
	return s.Status == nil || s.Status.State == "active" || s.Status.State == "pending"
}

// CreatedBy marks the silences Herd makes.
const CreatedBy = "herd"

// ErrNotFound is Alertmanager's answer for a silence it does not have.
var ErrNotFound = errors.New("silence not found")

// Client talks to the members of one Alertmanager cluster: each call goes
// to the first member that answers.
type Client struct {
	urls  []string
	token string
	http  *http.Client
}

// NewClient builds a client from the policy section, reading its token and
// TLS files.
func NewClient(p *policy.AlertmanagerPolicy) (*Client, error) {
	c := &Client{urls: p.URLs, http: &http.Client{Timeout: p.Timeout}}
	if p.TokenFile != "" {
		b, err := os.ReadFile(p.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("alertmanager.token_file: %w", err)
		}
		c.token = strings.TrimSpace(string(b))
	}
	if p.CAFile != "" || p.CertFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if p.CAFile != "" {
			pem, err := os.ReadFile(p.CAFile)
			if err != nil {
				return nil, fmt.Errorf("alertmanager.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("alertmanager.ca_file: %s holds no PEM certificate", p.CAFile)
			}
			tc.RootCAs = pool
		}
		if p.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("alertmanager.cert_file: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = tc
		c.http.Transport = t
	}
	return c, nil
}

// do sends a request to each member in turn until one answers; a 4xx
// answer is final (the next member would say the same).
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var payload []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		payload = b
	}
	var errs []error
	for _, base := range c.urls {
		req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, bytes.NewReader(payload))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		data, rerr := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusNotFound:
			return fmt.Errorf("%s %s: %w", method, base+path, ErrNotFound)
		case resp.StatusCode >= 400 && resp.StatusCode < 500:
			return fmt.Errorf("%s %s: %s: %s", method, base+path, resp.Status, strings.TrimSpace(string(data)))
		case resp.StatusCode >= 300:
			errs = append(errs, fmt.Errorf("%s %s: %s", method, base+path, resp.Status))
			continue
		case rerr != nil:
			errs = append(errs, fmt.Errorf("%s %s: %w", method, base+path, rerr))
			continue
		}
		if out != nil {
			if err := json.Unmarshal(data, out); err != nil {
				return fmt.Errorf("%s %s: bad answer: %w", method, base+path, err)
			}
		}
		return nil
	}
	return fmt.Errorf("no alertmanager answered: %w", errors.Join(errs...))
}

// PostSilence creates a silence, or updates the one with s.ID (Alertmanager
// may answer with a new id when the update cannot be made in place).
func (c *Client) PostSilence(ctx context.Context, s Silence) (string, error) {
	var out struct {
		SilenceID string `json:"silenceID"`
	}
	if err := c.do(ctx, http.MethodPost, "/api/v2/silences", s, &out); err != nil {
		return "", err
	}
	if out.SilenceID == "" {
		return "", errors.New("alertmanager answered without a silence id")
	}
	return out.SilenceID, nil
}

// ExpireSilence ends a silence now; one Alertmanager no longer has is
// reported as ErrNotFound.
func (c *Client) ExpireSilence(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v2/silence/"+url.PathEscape(id), nil, nil)
}

// Silences lists every silence Alertmanager holds.
func (c *Client) Silences(ctx context.Context) ([]Silence, error) {
	var out []Silence
	err := c.do(ctx, http.MethodGet, "/api/v2/silences", nil, &out)
	return out, err
}
