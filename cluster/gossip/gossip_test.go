package gossip

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-project/herd/internal/testutil"
)

func startMember(t *testing.T, name string, keys [][]byte, meta MemberMeta) *Gossip {
	t.Helper()
	g, err := Start(Config{Name: name, Bind: "127.0.0.1:0", Keys: keys, Meta: meta, Fast: true, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })
	return g
}

func aliveCount(g *Gossip) int {
	n := 0
	for _, m := range g.Members() {
		if m.State == "alive" {
			n++
		}
	}
	return n
}

func TestGossipEncryptedPool(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	other := bytes.Repeat([]byte{9}, 32)
	s1 := startMember(t, "s1", [][]byte{key}, MemberMeta{Role: RoleServer, API: "http://127.0.0.1:7420"})
	a1 := startMember(t, "agent-h1", [][]byte{key}, MemberMeta{Role: RoleAgent, Host: "h1", Hypervisor: "ok"})
	if err := a1.Join([]string{s1.Addr()}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "two alive members", func() bool { return aliveCount(s1) == 2 })
	var seen Member
	for _, m := range s1.Members() {
		if m.Name == "agent-h1" {
			seen = m
		}
	}
	if seen.Meta.Role != RoleAgent || seen.Meta.Host != "h1" || seen.Meta.Hypervisor != "ok" {
		t.Fatalf("agent metadata seen by the server: %+v", seen)
	}
	// Metadata changes travel.
	if err := a1.SetMeta(MemberMeta{Role: RoleAgent, Host: "h1", Hypervisor: "down"}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "updated metadata", func() bool {
		for _, m := range s1.Members() {
			if m.Name == "agent-h1" && m.Meta.Hypervisor == "down" {
				return true
			}
		}
		return false
	})

	// A member with the wrong key, or none, does not join.
	for name, keys := range map[string][][]byte{"wrong-key": {other}, "no-key": nil} {
		intruder := startMember(t, name, keys, MemberMeta{Role: RoleAgent})
		if err := intruder.Join([]string{s1.Addr()}); err == nil {
			t.Errorf("%s joined an encrypted pool", name)
		}
		time.Sleep(300 * time.Millisecond)
		for _, m := range s1.Members() {
			if m.Name == name {
				t.Errorf("%s appears in the pool: %+v", name, m)
			}
		}
	}

	// A member that stops answering is seen dead; one that leaves, left.
	a1.Shutdown()
	testutil.WaitFor(t, 10*time.Second, "the stopped agent seen dead", func() bool {
		for _, m := range s1.Members() {
			if m.Name == "agent-h1" {
				return false
			}
		}
		return true
	})
}

func TestReadKeyring(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "keys")
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 16)
	os.WriteFile(good, []byte("# primary first\n"+base64.StdEncoding.EncodeToString(k1)+"\n\n"+base64.StdEncoding.EncodeToString(k2)+"\n"), 0o600)
	keys, err := ReadKeyring(good)
	if err != nil || len(keys) != 2 || !bytes.Equal(keys[0], k1) {
		t.Fatalf("keyring: %v %v", keys, err)
	}
	for name, text := range map[string]string{
		"not base64": "%%%\n",
		"bad length": base64.StdEncoding.EncodeToString([]byte("short")) + "\n",
		"empty":      "# nothing\n",
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o600)
		if _, err := ReadKeyring(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestGossipProbesAndLoss: OnProbe hears successful probes; a member whose
// uplink drops everything (its TCP answers too) turns suspect at the
// others, which OnSuspect hears, then dead; it is alive again when it
// answers.
func TestGossipProbesAndLoss(t *testing.T) {
	var mu sync.Mutex
	probes := 0
	var lossy atomic.Bool
	var suspicions atomic.Int64
	a, err := Start(Config{Name: "a", Bind: "127.0.0.1:0", Fast: true, Logger: testutil.Logger(t),
		OnProbe: func(rtt time.Duration) {
			mu.Lock()
			probes++
			mu.Unlock()
		},
		OnSuspect: func() { suspicions.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	b, err := Start(Config{Name: "b", Bind: "127.0.0.1:0", Fast: true, Logger: testutil.Logger(t), Drop: lossy.Load})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	if err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "probes heard", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return probes > 0
	})
	state := func() string {
		for _, m := range a.Members() {
			if m.Name == "b" {
				return m.State
			}
		}
		return "gone"
	}
	if n := suspicions.Load(); n != 0 {
		t.Fatalf("%d suspicions before any loss", n)
	}
	lossy.Store(true)
	testutil.WaitFor(t, 10*time.Second, "b suspected by a", func() bool { return suspicions.Load() > 0 })
	testutil.WaitFor(t, 10*time.Second, "b declared dead at a", func() bool { return state() == "gone" })
	lossy.Store(false)
	testutil.WaitFor(t, 15*time.Second, "b alive again at a", func() bool {
		if state() == "gone" {
			_ = b.Join([]string{a.Addr()})
		}
		return state() == "alive"
	})
}

// TestGossipProfiles: each profile's memberlist timings; an unknown one is
// refused.
func TestGossipProfiles(t *testing.T) {
	for _, tt := range []struct {
		profile          string
		probeTimeout     time.Duration
		suspicionMult    int
		indirectChecks   int
		wantErrSubstring string
	}{
		{"", 500 * time.Millisecond, 4, 3, ""},
		{ProfileLAN, 500 * time.Millisecond, 4, 3, ""},
		{ProfileLocal, 200 * time.Millisecond, 3, 1, ""},
		{"wan", 0, 0, 0, `gossip profile "wan": want one of lan, local`},
	} {
		t.Run(tt.profile, func(t *testing.T) {
			mc, err := memberlistConfig(tt.profile)
			if tt.wantErrSubstring != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrSubstring) {
					t.Fatalf("err %v, want %q", err, tt.wantErrSubstring)
				}
				if _, err := Start(Config{Name: "x", Bind: "127.0.0.1:0", Profile: tt.profile}); err == nil {
					t.Fatal("Start accepted an unknown profile")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if mc.ProbeTimeout != tt.probeTimeout || mc.SuspicionMult != tt.suspicionMult || mc.IndirectChecks != tt.indirectChecks {
				t.Errorf("probe timeout %v, suspicion mult %d, indirect checks %d; want %v, %d, %d",
					mc.ProbeTimeout, mc.SuspicionMult, mc.IndirectChecks, tt.probeTimeout, tt.suspicionMult, tt.indirectChecks)
			}
		})
	}
}

// BenchmarkGossipDeathDetection measures, per profile, how long six
// members on loopback take to declare a seventh dead after it stops
// without leaving (a crash): the agent half of detecting a crashed host.
func BenchmarkGossipDeathDetection(b *testing.B) {
	for _, profile := range Profiles {
		b.Run(profile, func(b *testing.B) {
			var total time.Duration
			for range b.N {
				b.StopTimer()
				var pool []*Gossip
				for i := range 7 {
					g, err := Start(Config{Name: fmt.Sprintf("m%d", i), Bind: "127.0.0.1:0", Profile: profile, Logger: slog.New(slog.DiscardHandler)})
					if err != nil {
						b.Fatal(err)
					}
					if i > 0 {
						if err := g.Join([]string{pool[0].Addr()}); err != nil {
							b.Fatal(err)
						}
					}
					pool = append(pool, g)
				}
				testutil.WaitFor(b, 30*time.Second, "a full pool", func() bool { return len(pool[1].Members()) == 7 })
				b.StartTimer()
				start := time.Now()
				_ = pool[6].Shutdown()
				testutil.WaitFor(b, 60*time.Second, "the crashed member declared dead", func() bool { return len(pool[0].Members()) == 6 })
				total += time.Since(start)
				b.StopTimer()
				for _, g := range pool[:6] {
					_ = g.Shutdown()
				}
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "detect-s")
		})
	}
}
