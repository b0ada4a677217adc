package api

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
)

// Client talks to a Herd server's API.
type Client struct {
	Base  string // http://host:port
	Token string
	HTTP  *http.Client
	// Consistent asks every read of the leader (?stale=false).
	Consistent bool
	// Warn, when set, hears why an answer is stale (X-Herd-Stale).
	Warn func(msg string)
}

// StaleHeader names why a read's answer may not be current.
const StaleHeader = "X-Herd-Stale"

// prepare adds ?stale=false to a consistent client's reads.
func (c *Client) prepare(method string, q url.Values) url.Values {
	if !c.Consistent || method != http.MethodGet {
		return q
	}
	out := url.Values{}
	for k, v := range q {
		out[k] = v
	}
	out.Set("stale", "false")
	return out
}

// heard passes a stale answer's reason to Warn.
func (c *Client) heard(resp *http.Response) {
	if msg := resp.Header.Get(StaleHeader); msg != "" && c.Warn != nil {
		c.Warn(msg)
	}
}

// NewClient returns a client for the API at addr (host:port or URL).
func NewClient(addr, token string) (*Client, error) {
	if addr == "" {
		addr = "http://127.0.0.1:7420"
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("address %q is not an http(s) URL or host:port", addr)
	}
	return &Client{Base: strings.TrimRight(u.String(), "/"), Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}, nil
}

// ClientTLS returns a TLS configuration that trusts the CA in caFile (the
// system roots when empty) and presents certFile/keyFile when both are set.
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := LoadCAPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a client certificate needs both its certificate and key files")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// LoadCAPool reads the PEM CA certificates in path.
func LoadCAPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// UseTLS makes the client use cfg for https addresses.
func (c *Client) UseTLS(cfg *tls.Config) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	c.HTTP.Transport = t
}

// StatusError is an error answer from the server.
type StatusError struct {
	Code int
	Body Error
}

func (e *StatusError) Error() string {
	msg := e.Body.Error
	if e.Body.Field != "" {
		msg = e.Body.Field + ": " + msg
	}
	for _, d := range e.Body.Errors {
		msg += "\n  " + d.Message
	}
	for _, b := range e.Body.Blockers {
		if b.VM != "" {
			msg += fmt.Sprintf("\n  blocker: %s: %s", b.VM, b.Reason)
		} else {
			msg += "\n  blocker: " + b.Reason
		}
	}
	return fmt.Sprintf("%s (HTTP %d)", msg, e.Code)
}

// doRaw sends a body as is and returns the answer's body.
func (c *Client) doRaw(ctx context.Context, method, path string, q url.Values, contentType string, body []byte) ([]byte, http.Header, error) {
	q = c.prepare(method, q)
	u := c.Base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	c.heard(resp)
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		se := &StatusError{Code: resp.StatusCode}
		if json.Unmarshal(data, &se.Body) != nil || se.Body.Error == "" {
			se.Body.Error = strings.TrimSpace(string(data))
		}
		return nil, nil, se
	}
	return data, resp.Header, nil
}

// Do sends a request with an optional JSON body and decodes the JSON answer
// into out (when not nil).
func (c *Client) Do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	var b []byte
	var contentType string
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		contentType = "application/json"
	}
	data, _, err := c.doRaw(ctx, method, path, q, contentType, b)
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// Get is Do with GET.
func (c *Client) Get(ctx context.Context, path string, q url.Values, out any) error {
	return c.Do(ctx, http.MethodGet, path, q, nil, out)
}

// Hosts lists the hosts.
func (c *Client) Hosts(ctx context.Context) ([]Host, error) {
	var out Hosts
	err := c.Get(ctx, "/v1/hosts", nil, &out)
	return out.Hosts, err
}

// Host returns one host.
func (c *Client) Host(ctx context.Context, name string) (*Host, error) {
	var out Host
	if err := c.Get(ctx, "/v1/hosts/"+url.PathEscape(name), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// VMs lists VMs, on one host when host is not empty.
func (c *Client) VMs(ctx context.Context, host string) ([]VMView, error) {
	q := url.Values{}
	if host != "" {
		q.Set("host", host)
	}
	var out VMs
	err := c.Get(ctx, "/v1/vms", q, &out)
	return out.VMs, err
}

// EventQuery selects events.
type EventQuery struct {
	Host, VM, Operation string
	Since               time.Time
	Limit               int
}

// Events reads the action log.
func (c *Client) Events(ctx context.Context, eq EventQuery) (*Events, error) {
	q := url.Values{}
	if eq.Host != "" {
		q.Set("host", eq.Host)
	}
	if eq.VM != "" {
		q.Set("vm", eq.VM)
	}
	if eq.Operation != "" {
		q.Set("operation", eq.Operation)
	}
	if !eq.Since.IsZero() {
		q.Set("since", eq.Since.UTC().Format(time.RFC3339))
	}
	if eq.Limit > 0 {
		q.Set("limit", fmt.Sprint(eq.Limit))
	}
	var out Events
	err := c.Get(ctx, "/v1/events", q, &out)
	return &out, err
}

// Cluster describes the raft cluster.
func (c *Client) Cluster(ctx context.Context) (*Cluster, error) {
	var out Cluster
	if err := c.Get(ctx, "/v1/cluster", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetHostStatus changes a host's admin status.
func (c *Client) SetHostStatus(ctx context.Context, host string, req StatusRequest) (*Host, error) {
	var out Host
	if err := c.Do(ctx, http.MethodPut, "/v1/hosts/"+url.PathEscape(host)+"/status", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Maintenance sends PUT /v1/hosts/{host}/maintenance.
func (c *Client) Maintenance(ctx context.Context, host string, req MaintenanceRequest) (*OperationRef, error) {
	var out OperationRef
	if err := c.Do(ctx, http.MethodPut, "/v1/hosts/"+url.PathEscape(host)+"/maintenance", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Precheck asks what entering maintenance would do.
func (c *Client) Precheck(ctx context.Context, host string, req MaintenanceRequest) (*Precheck, error) {
	var out Precheck
	if err := c.Do(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(host)+"/maintenance/precheck", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ExitPrecheck lists what left a host in maintenance and where it is now.
func (c *Client) ExitPrecheck(ctx context.Context, host string) (*ExitPrecheck, error) {
	var out ExitPrecheck
	if err := c.Get(ctx, "/v1/hosts/"+url.PathEscape(host)+"/maintenance/exit-precheck", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// MigrateVM asks for one VM to move.
func (c *Client) MigrateVM(ctx context.Context, vm string, req MigrateRequest) (*OperationRef, error) {
	res, err := c.Migrate(ctx, vm, req)
	if err != nil {
		return nil, err
	}
	return &res.OperationRef, nil
}

// Migrate starts a migration and says where it goes; with req.DryRun it
// only says where it would go (Operation is empty).
func (c *Client) Migrate(ctx context.Context, vm string, req MigrateRequest) (*MigrateResult, error) {
	var out MigrateResult
	if err := c.Do(ctx, http.MethodPost, "/v1/vms/"+url.PathEscape(vm)+"/migrate", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Operations lists operations, newest first, optionally of one host.
func (c *Client) Operations(ctx context.Context, host string) ([]Operation, error) {
	q := url.Values{}
	if host != "" {
		q.Set("host", host)
	}
	var out Operations
	err := c.Get(ctx, "/v1/operations", q, &out)
	return out.Operations, err
}

// Operation returns one operation.
func (c *Client) Operation(ctx context.Context, id string) (*Operation, error) {
	var out Operation
	if err := c.Get(ctx, "/v1/operations/"+url.PathEscape(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CancelOperation stops an operation: in-flight steps finish, nothing new starts.
func (c *Client) CancelOperation(ctx context.Context, id string) (*Operation, error) {
	var out Operation
	if err := c.Do(ctx, http.MethodPost, "/v1/operations/"+url.PathEscape(id)+"/cancel", nil, struct{}{}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RetryOperation runs a failed or cancelled evacuation again.
func (c *Client) RetryOperation(ctx context.Context, id string) (*Operation, error) {
	var out Operation
	if err := c.Do(ctx, http.MethodPost, "/v1/operations/"+url.PathEscape(id)+"/retry", nil, struct{}{}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Policy returns the policy in force as YAML, with its version and hash.
func (c *Client) Policy(ctx context.Context) ([]byte, PolicyInfo, error) {
	data, h, err := c.doRaw(ctx, http.MethodGet, "/v1/policy", nil, "", nil)
	if err != nil {
		return nil, PolicyInfo{}, err
	}
	var info PolicyInfo
	fmt.Sscan(h.Get("X-Herd-Policy-Version"), &info.Version)
	info.Hash = h.Get("X-Herd-Policy-Hash")
	return data, info, nil
}

// ApplyPolicy puts a policy (YAML) in force cluster-wide.
func (c *Client) ApplyPolicy(ctx context.Context, yaml []byte, source string) (*PolicyInfo, error) {
	q := url.Values{}
	if source != "" {
		q.Set("source", source)
	}
	data, _, err := c.doRaw(ctx, http.MethodPut, "/v1/policy", q, "application/yaml", yaml)
	if err != nil {
		return nil, err
	}
	var info PolicyInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("PUT /v1/policy: decode answer: %w", err)
	}
	return &info, nil
}

// ValidatePolicy asks the server whether a policy is valid.
func (c *Client) ValidatePolicy(ctx context.Context, yaml []byte) error {
	_, _, err := c.doRaw(ctx, http.MethodPost, "/v1/policy/validate", nil, "application/yaml", yaml)
	return err
}

// AppendEvent writes a note into the action log.
func (c *Client) AppendEvent(ctx context.Context, e EventRequest) error {
	return c.Do(ctx, http.MethodPost, "/v1/events", nil, e, nil)
}

// BalancePlan asks for the balancer's recommendations now.
func (c *Client) BalancePlan(ctx context.Context) (*BalancePlan, error) {
	var out BalancePlan
	if err := c.Get(ctx, "/v1/balance/plan", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// BalanceApply runs the balancer's recommendations as an operation.
func (c *Client) BalanceApply(ctx context.Context) (*OperationRef, error) {
	var out OperationRef
	if err := c.Do(ctx, http.MethodPost, "/v1/balance/apply", nil, struct{}{}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveServerRequest is the body of POST /v1/cluster/remove.
type RemoveServerRequest struct {
	ID string `json:"id"`
}

// LeaveResult names the server that left.
type LeaveResult struct {
	Left string `json:"left"`
}

// Leave makes the server this client talks to leave the cluster (it
// stops afterwards).
func (c *Client) Leave(ctx context.Context) (*LeaveResult, error) {
	var out LeaveResult
	if err := c.Do(ctx, http.MethodPost, "/v1/cluster/leave", nil, struct{}{}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveServer takes a server out of the raft configuration (leader).
func (c *Client) RemoveServer(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodPost, "/v1/cluster/remove", nil, RemoveServerRequest{ID: id}, nil)
}

// RenewLease sends PUT /v1/hosts/{host}/lease.
func (c *Client) RenewLease(ctx context.Context, host string, req LeaseRequest) (*Lease, error) {
	var out Lease
	if err := c.Do(ctx, http.MethodPut, "/v1/hosts/"+url.PathEscape(host)+"/lease", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ReleaseLease sends DELETE /v1/hosts/{host}/lease: the agent stops cleanly.
func (c *Client) ReleaseLease(ctx context.Context, host string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/hosts/"+url.PathEscape(host)+"/lease", nil, nil, nil)
}

// DevHost makes a dev-mode simulator host crash (stop answering) or be
// restored: POST /v1/dev/hosts/{host}/crash|restore.
func (c *Client) DevHost(ctx context.Context, host string, crash bool) error {
	what := "restore"
	if crash {
		what = "crash"
	}
	return c.Do(ctx, http.MethodPost, "/v1/dev/hosts/"+url.PathEscape(host)+"/"+what, nil, nil, nil)
}
