package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/internal/testutil"
)

// testCluster is three real `herd server` processes with API tokens.
type testCluster struct {
	procs []*serverProc
	tok   testTokens
	admin []*api.Client
}

// startCluster starts three server processes; raftExtra is added to each
// one's raft section.
func startCluster(t *testing.T, raftExtra string) *testCluster {
	t.Helper()
	tc := &testCluster{tok: writeTestTokens(t)}
	apis := []string{testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)}
	for i, path := range serverConfigs(t, tc.tok, apis, raftExtra) {
		p := &serverProc{cfg: path, api: apis[i]}
		p.start(t)
		tc.procs = append(tc.procs, p)
		c, _ := api.NewClient(apis[i], tc.tok.admin)
		c.HTTP.Timeout = 5 * time.Second
		tc.admin = append(tc.admin, c)
	}
	t.Cleanup(func() {
		for _, p := range tc.procs {
			p.kill9()
		}
	})
	testutil.WaitFor(t, 30*time.Second, "a three-server cluster", func() bool {
		for _, c := range tc.admin {
			cl, err := c.Cluster(context.Background())
			if err != nil || cl.Leader == "" || len(cl.Servers) != 3 {
				return false
			}
			for _, s := range cl.Servers {
				if s.APIAddr == "" {
					return false
				}
			}
		}
		return true
	})
	return tc
}

// serverConfigs writes one config per API address: servers that bootstrap
// together, each joining the others.
func serverConfigs(t *testing.T, tok testTokens, apis []string, raftExtra string) []string {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for i := range apis {
		var join []string
		for j, a := range apis {
			if j != i {
				join = append(join, a)
			}
		}
		cfg := fmt.Sprintf("node_name: s%d\ndata_dir: %s\npolicy_file: %s\napi:\n  listen: %s\n  tokens_file: %s\n  server_token_file: %s\n"+
			"  write_rate: 10000\n  write_burst: 100000\nraft:\n  listen: %s\n  bootstrap_expect: %d\n  join: [%s]\n%slog:\n  level: error\n",
			i+1, filepath.Join(dir, fmt.Sprint(i+1)), filepath.Join(dir, "none.yaml"), apis[i], tok.file, tok.server,
			testutil.FreePort(t), len(apis), strings.Join(join, ", "), raftExtra)
		path := filepath.Join(dir, fmt.Sprintf("herd%d.yaml", i+1))
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	return paths
}

// leader returns the index of the leading server.
func (tc *testCluster) leader(t *testing.T) int {
	t.Helper()
	idx := -1
	testutil.WaitFor(t, 20*time.Second, "a leader", func() bool {
		cl, err := tc.admin[0].Cluster(context.Background())
		if err != nil || cl.Leader == "" {
			return false
		}
		idx = -1
		fmt.Sscanf(cl.Leader, "s%d", &idx)
		idx--
		return idx >= 0
	})
	return idx
}

func (tc *testCluster) servers(t *testing.T, i int) []api.Server {
	t.Helper()
	lc := *tc.admin[i]
	lc.Consistent = true
	cl, err := lc.Cluster(context.Background())
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	return cl.Servers
}

// TestJoinUnreachableServerChangesNothing: a join naming a raft address
// nobody listens on is refused (4xx) and leaves three voters; one naming
// an address that accepts connections but never speaks raft joins as a
// non-voter, is never promoted, is removed after dead_server_timeout, and
// the cluster takes writes all along.
func TestJoinUnreachableServerChangesNothing(t *testing.T) {
	tc := startCluster(t, "  server_stabilization: 1s\n  dead_server_timeout: 3s\n")
	ctx := context.Background()
	l := tc.leader(t)
	follower := tc.admin[(l+1)%3]

	closed := testutil.FreePort(t)
	err := follower.Do(ctx, http.MethodPost, "/v1/cluster/join", nil, api.JoinRequest{ID: "s9", RaftAddr: closed, APIAddr: "http://" + closed}, nil)
	var se *api.StatusError
	if !errorsAs(err, &se) || se.Code/100 != 4 || se.Body.Field != "raft_addr" {
		t.Fatalf("join of an unreachable raft address: %v, want a 4xx naming raft_addr", err)
	}
	if got := tc.servers(t, l); len(got) != 3 {
		t.Fatalf("servers after a refused join: %+v", got)
	}
	if err := follower.AppendEvent(ctx, api.EventRequest{Type: "note", Message: "still writable"}); err != nil {
		t.Fatalf("write after a refused join: %v", err)
	}
	// Not in dev mode: crash says so, rather than "no such endpoint".
	if code, _, errOut := runCLI("host", "crash", "h1", "--address="+follower.Base, "--token", tc.tok.admin); code != exitError || !strings.Contains(errOut, "dev mode only") {
		t.Fatalf("host crash on a server not in dev mode: exit %d %q", code, errOut)
	}

	// A black hole: accepts TCP, never answers raft.
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	go func() {
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	var res api.JoinResult
	if err := follower.Do(ctx, http.MethodPost, "/v1/cluster/join", nil, api.JoinRequest{ID: "s8", RaftAddr: hole.Addr().String(), APIAddr: "http://" + hole.Addr().String()}, &res); err != nil {
		t.Fatalf("join of a black hole: %v", err)
	}
	if res.Voter {
		t.Fatalf("a joining server became a voter at once: %+v", res)
	}
	start := time.Now()
	seen := false
	testutil.WaitFor(t, 30*time.Second, "the silent non-voter removed", func() bool {
		present := false
		for _, s := range tc.servers(t, tc.leader(t)) {
			if s.ID == "s8" {
				present, seen = true, true
				if s.Voter {
					t.Fatalf("a server that never answered was promoted: %+v", s)
				}
				if s.Health != nil && (s.Health.Up || s.Health.Healthy) {
					t.Fatalf("a server that never answered is shown up: %+v", *s.Health)
				}
			}
		}
		if err := tc.admin[l].AppendEvent(ctx, api.EventRequest{Type: "note", Message: "writable while s8 is a non-voter"}); err != nil {
			t.Fatalf("write while a silent non-voter is in the configuration: %v", err)
		}
		return seen && !present
	})
	t.Logf("silent non-voter removed %s after its join", time.Since(start).Round(100*time.Millisecond))
	if got := tc.servers(t, tc.leader(t)); len(got) != 3 {
		t.Fatalf("servers at the end: %+v", got)
	}
}

func errorsAs(err error, se **api.StatusError) bool {
	e, ok := err.(*api.StatusError)
	if ok {
		*se = e
	}
	return ok
}

// readyStats reads a server's /readyz code and its raft position.
func readyz(addr string) int {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func selfStats(t *testing.T, c *api.Client) api.RaftStats {
	t.Helper()
	var out api.ServerStats
	if err := c.Get(context.Background(), "/v1/cluster/self", nil, &out); err != nil {
		t.Fatalf("cluster/self: %v", err)
	}
	return out.Raft
}

// TestRestartedFollowerNotReadyUntilCaughtUp: a follower killed with
// SIGKILL and restarted answers /readyz 200 only once it has applied what
// the leader had committed; polled every 50 ms.
func TestRestartedFollowerNotReadyUntilCaughtUp(t *testing.T) {
	tc := startCluster(t, "")
	ctx := context.Background()
	l := tc.leader(t)
	f := (l + 1) % 3
	for i := 0; i < 200; i++ {
		if err := tc.admin[l].AppendEvent(ctx, api.EventRequest{Type: "note", Message: fmt.Sprintf("before %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	tc.procs[f].kill9()
	for i := 0; i < 200; i++ {
		if err := tc.admin[l].AppendEvent(ctx, api.EventRequest{Type: "note", Message: fmt.Sprintf("while down %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	target := selfStats(t, tc.admin[l]).CommitIndex
	tc.procs[f].start(t)
	deadline := time.Now().Add(30 * time.Second)
	notReady := 0
	for {
		code := readyz(tc.procs[f].api)
		if code == http.StatusOK {
			st := selfStats(t, tc.admin[f])
			if st.AppliedIndex < target {
				t.Fatalf("/readyz 200 with applied index %d, the leader had committed %d before the restart", st.AppliedIndex, target)
			}
			ev, err := tc.admin[f].Events(ctx, api.EventQuery{})
			if err != nil {
				t.Fatal(err)
			}
			if n := len(ev.Events); n < 400 {
				t.Fatalf("/readyz 200 with %d events, want at least 400", n)
			}
			break
		}
		if code != 0 {
			notReady++
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted follower not ready after 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("restarted follower answered 503 %d times, then 200 once caught up to %d", notReady, target)
}

// TestReadsDuringLostQuorumAreMarkedStale: every read carries the leader
// contact headers; once two of three servers are gone, the survivor's
// reads are marked stale (the CLI prints a warning), and a consistent read
// is refused saying a majority is needed.
func TestReadsDuringLostQuorumAreMarkedStale(t *testing.T) {
	tc := startCluster(t, "")
	l := tc.leader(t)
	f := (l + 1) % 3
	get := func(i int, path string) http.Header {
		req, _ := http.NewRequest("GET", "http://"+tc.procs[i].api+path, nil)
		req.Header.Set("Authorization", "Bearer "+tc.tok.read)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header
	}
	testutil.WaitFor(t, 10*time.Second, "a fresh read from a follower", func() bool {
		h := get(f, "/v1/hosts")
		return h.Get("X-Herd-Known-Leader") == "true" && h.Get("X-Herd-Index") != "" && h.Get("X-Herd-Last-Contact") != "" && h.Get("X-Herd-Stale") == ""
	})
	for i := range tc.procs {
		if i != f {
			tc.procs[i].kill9()
		}
	}
	testutil.WaitFor(t, 20*time.Second, "the survivor's reads marked stale", func() bool {
		h := get(f, "/v1/hosts")
		return h.Get("X-Herd-Stale") != "" && h.Get("X-Herd-Known-Leader") == "false"
	})
	addr := "--address=" + tc.procs[f].api
	code, _, errOut := runCLI("host", "ls", addr, "--token", tc.tok.read)
	if code != 0 || !strings.Contains(errOut, "warning: this answer may not be current") || !strings.Contains(errOut, "no raft leader") {
		t.Fatalf("host ls during lost quorum: exit %d, stderr %q: want a stale warning", code, errOut)
	}
	code, _, errOut = runCLI("host", "ls", addr, "--token", tc.tok.read, "--consistent")
	if code == 0 || !strings.Contains(errOut, "majority") {
		t.Fatalf("consistent host ls during lost quorum: exit %d, stderr %q: want a refusal saying a majority is needed", code, errOut)
	}
	code, out, errOut := runCLI("cluster", addr, "--token", tc.tok.read)
	if code != 0 || strings.Contains(out, "follower") || !strings.Contains(out, "majority") {
		t.Fatalf("herd cluster during lost quorum: exit %d\n%s%s", code, out, errOut)
	}
	var h api.Health
	resp, err := http.Get("http://" + tc.procs[f].api + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz without a leader: %d %+v", resp.StatusCode, h)
	}
}

// TestJoiningServerPromotedOnceCaughtUp: a fourth server process that
// joins a running cluster enters as a non-voter and is promoted to voter
// once it has caught up and stayed healthy for server_stabilization.
func TestJoiningServerPromotedOnceCaughtUp(t *testing.T) {
	tc := startCluster(t, "  server_stabilization: 2s\n")
	ctx := context.Background()
	l := tc.leader(t)
	for i := 0; i < 50; i++ {
		if err := tc.admin[l].AppendEvent(ctx, api.EventRequest{Type: "note", Message: fmt.Sprintf("before s4 %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	api4 := testutil.FreePort(t)
	var join []string
	for _, p := range tc.procs {
		join = append(join, p.api)
	}
	cfg := fmt.Sprintf("node_name: s4\ndata_dir: %s\npolicy_file: %s\napi:\n  listen: %s\n  tokens_file: %s\n  server_token_file: %s\n"+
		"raft:\n  listen: %s\n  join: [%s]\n  server_stabilization: 2s\nlog:\n  level: error\n",
		filepath.Join(dir, "data"), filepath.Join(dir, "none.yaml"), api4, tc.tok.file, tc.tok.server, testutil.FreePort(t), strings.Join(join, ", "))
	path := filepath.Join(dir, "herd4.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p4 := &serverProc{cfg: path, api: api4}
	p4.start(t)
	defer p4.kill9()
	sawNonVoter := false
	var promoted time.Time
	start := time.Now()
	testutil.WaitFor(t, 40*time.Second, "s4 promoted to voter and healthy", func() bool {
		for _, s := range tc.servers(t, tc.leader(t)) {
			if s.ID != "s4" {
				continue
			}
			if !s.Voter {
				sawNonVoter = true
				return false
			}
			if promoted.IsZero() {
				promoted = time.Now()
			}
			return s.Health != nil && s.Health.Up && s.Health.Healthy
		}
		return false
	})
	if !sawNonVoter {
		t.Fatal("s4 became a voter without first being a non-voter")
	}
	t.Logf("s4 joined as a non-voter and was promoted %s after it started", promoted.Sub(start).Round(100*time.Millisecond))
	// The new voter has the log: its reads are fresh and complete.
	c4, _ := api.NewClient(api4, tc.tok.admin)
	ev, err := c4.Events(ctx, api.EventQuery{})
	if err != nil || len(ev.Events) < 50 {
		t.Fatalf("events on s4: %d %v", len(ev.Events), err)
	}
}
