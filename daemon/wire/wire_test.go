package wire

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/cluster/gossip"
	"github.com/herd-project/herd/cluster/raftnode"
	"github.com/herd-project/herd/daemon/api"
)

var updateWire = flag.Bool("update-wire", false, "rewrite testdata/wire.golden.json")

// wireFixture is every replicated type the API shows, with every field set
// (and a zero host and operation, for the omitempty fields).
type wireFixture struct {
	host    cluster.Host
	usage   cluster.HostUsage
	stale   cluster.StaleCopy
	silence cluster.Silence
	vm      cluster.VM
	op      cluster.Operation
	event   cluster.Event
	member  gossip.Member
	raft    raftnode.Stats
}

func newWireFixture() wireFixture {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	return wireFixture{
		host: cluster.Host{Name: "h1", Driver: "lab", Group: "g1", Admin: cluster.InMaintenance, AdminReason: "kernel",
			Maintenance: cluster.MaintenanceOn, Operation: "op-1", Health: cluster.HealthDead, Connection: cluster.NotResponding,
			MemoryBytes: 64 << 30, CPUs: 16, CPUMHz: 2400, Labels: map[string]string{"rack": "r1", "zone": "a"},
			DownSince: at(1), FencedBy: "power", FenceFailure: "ipmi timeout", LeaseTTL: 8 * time.Second, Seen: at(2)},
		usage:   cluster.HostUsage{VMs: 5, RunningVMs: 3, MemoryUsedBytes: 12 << 30, VCPUsUsed: 6},
		stale:   cluster.StaleCopy{VM: "vm-1", ID: "old-1", Name: "web", Host: "h1", Driver: "lab", Since: at(3)},
		silence: cluster.Silence{Host: "h1", ID: "5f1c", Operation: "op-1", StartsAt: at(4), EndsAt: at(5)},
		vm: cluster.VM{ID: "vm-1", Name: "web", Host: "h2", Driver: "lab", MemoryBytes: 2 << 30, VCPUs: 2,
			Power: cluster.PoweredOn, Priority: 100, Unmovable: "pinned", Autostart: true,
			RecreatedFrom: "old-1", Stale: true, StepIndex: 42},
		op: cluster.Operation{ID: "op-1", Kind: cluster.OpEvacuate, Host: "h1", Parent: "op-0", State: cluster.OpRunning,
			Migrate: "all", TargetHost: "h2", Actor: "admin", Created: at(6), Updated: at(7), Progress: at(8),
			Error: "some failed", Cancelled: true, MaxAttempts: 5, Detected: at(9),
			Items: []cluster.OpItem{
				{VM: "vm-1", Name: "web", Action: cluster.ActionLiveMigrate, From: "h1", MemoryBytes: 2 << 30, Priority: 100,
					Planned: "h3", Target: "h2", NewID: "new-1", WasRunning: true, State: cluster.ItemDone, Attempts: 2,
					TargetLosses: 1, SourceLosses: 2, Tried: []string{"h3"}, Error: "h3 lost", Started: at(10), Finished: at(11)},
				{VM: "vm-2", Name: "db", Action: cluster.ActionShutdown, From: "h1", State: cluster.ItemRunning},
				{VM: "vm-3", Name: "mq", Action: cluster.ActionOfflineMigrate, From: "h1", State: cluster.ItemPending},
				{VM: "vm-4", Name: "ci", Action: cluster.ActionPowerOn, From: "h1", State: cluster.ItemFailed},
				{VM: "vm-5", Name: "dev", Action: cluster.ActionPowerOn, From: "h1", State: cluster.ItemCancelled},
			}},
		event: cluster.Event{Seq: 7, Time: at(12), Type: "vm.migrated", Actor: "admin", Host: "h1", VM: "vm-1",
			Operation: "op-1", Message: "moved", Target: "h2"},
		member: gossip.Member{Name: "agent-h1", Addr: "10.0.0.1:7946", State: "alive",
			Meta: gossip.MemberMeta{Role: "agent", Host: "h1", API: "https://10.0.0.1:8443", Hypervisor: "ok"}},
		raft: raftnode.Stats{State: "Follower", Term: 3, LastLogIndex: 100, LastLogTerm: 3, CommitIndex: 99,
			AppliedIndex: 98, LastContactMillis: 12},
	}
}

// wireValues builds the API answers from the fixture as the handlers do.
func wireValues(f wireFixture) map[string]any {
	host := Host(&f.host, f.usage, 1)
	host.NotFenced = "fencing failed: ipmi timeout"
	host.Stale = []api.StaleCopyView{StaleCopy(&f.stale, "h2")}
	host.Silence = Silence(&f.silence)
	vm := VM(&f.vm)
	vm.Groups = []string{"critical"}
	ended := f.op
	ended.State, ended.Cancelled = cluster.OpCancelled, true
	return map[string]any{
		"host":              host,
		"host_zero":         Host(&cluster.Host{}, cluster.HostUsage{}, 0),
		"vm":                vm,
		"vm_zero":           VM(&cluster.VM{}),
		"operation":         Operation(&f.op),
		"operation_ended":   Operation(&ended),
		"operation_zero":    Operation(&cluster.Operation{}),
		"events":            api.Events{Events: Events([]cluster.Event{f.event, {}})},
		"cluster_gossip":    api.Cluster{Gossip: Gossip([]gossip.Member{f.member, {}})},
		"server_stats":      api.ServerStats{ID: "s1", Raft: RaftStats(f.raft)},
		"server_stats_zero": api.ServerStats{},
	}
}

func marshalWire(t *testing.T, values map[string]any) []byte {
	t.Helper()
	raw := map[string]json.RawMessage{}
	for name, v := range values {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("marshal %s: %v", name, err)
		}
		raw[name] = b
	}
	out, err := json.MarshalIndent(raw, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

// TestWireFormatUnchanged: the API's answers built from fully set (and
// zero) replicated values marshal to exactly the JSON the API has always
// answered (testdata/wire.golden.json, written from the wire types that
// embedded the replicated structs): field names, order, omitempty.
func TestWireFormatUnchanged(t *testing.T) {
	got := marshalWire(t, wireValues(newWireFixture()))
	const golden = "testdata/wire.golden.json"
	if *updateWire {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("wire format changed:\n--- got\n%s\n--- want (%s)\n%s", got, golden, want)
	}
}

// jsonField is one field of a struct as encoding/json shows it.
type jsonField struct {
	typ       reflect.Type
	omitempty bool
}

// jsonFields lists t's fields by JSON name, embedded structs flattened
// (an outer field hides an embedded one of the same name, as in
// encoding/json).
func jsonFields(t reflect.Type) map[string]jsonField {
	out := map[string]jsonField{}
	var embedded []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			embedded = append(embedded, f.Type)
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = jsonField{typ: f.Type, omitempty: strings.Contains(","+opts+",", ",omitempty,")}
	}
	for _, e := range embedded {
		for name, f := range jsonFields(e) {
			if _, ok := out[name]; !ok {
				out[name] = f
			}
		}
	}
	return out
}

var timeType = reflect.TypeFor[time.Time]()

// sameShape reports why a field of type a (the state's) would not encode
// like one of type b (the API's); "" when it does.
func sameShape(a, b reflect.Type, tags bool) string {
	switch {
	case a == timeType || b == timeType:
		if a != b {
			return a.String() + " is not " + b.String()
		}
		return ""
	case a.Kind() != b.Kind():
		return a.Kind().String() + " is not " + b.Kind().String()
	case a.Kind() == reflect.Slice, a.Kind() == reflect.Pointer:
		return sameShape(a.Elem(), b.Elem(), tags)
	case a.Kind() == reflect.Map:
		if r := sameShape(a.Key(), b.Key(), tags); r != "" {
			return r
		}
		return sameShape(a.Elem(), b.Elem(), tags)
	case a.Kind() == reflect.Struct:
		return missingFields(a, b, nil, tags)
	}
	return ""
}

// missingFields lists the JSON fields of the state's type a that the API's
// type b does not carry with the same name, kind and omitempty (except the
// fields in left, left out on purpose).
func missingFields(a, b reflect.Type, left map[string]string, tags bool) string {
	have := jsonFields(b)
	var out []string
	for name, f := range jsonFields(a) {
		if _, ok := left[name]; ok {
			continue
		}
		g, ok := have[name]
		switch {
		case !ok:
			out = append(out, name+": missing")
		case tags && f.omitempty != g.omitempty:
			out = append(out, name+": omitempty differs")
		default:
			if r := sameShape(f.typ, g.typ, tags); r != "" {
				out = append(out, name+": "+r)
			}
		}
	}
	for name := range left {
		if _, ok := jsonFields(a)[name]; !ok {
			out = append(out, name+": listed as left out but the state has no such field")
		}
	}
	return strings.Join(out, "; ")
}

// TestWireCarriesEveryField: every JSON field of a replicated type the API
// shows is carried by its wire type, with the same name, kind and
// omitempty, unless listed here as deliberately left out. A field added to
// the state fails this test until it is added to the API (and to
// this package's converter, which TestWireFormatUnchanged then pins) or listed.
func TestWireCarriesEveryField(t *testing.T) {
	for _, tc := range []struct {
		state, wire reflect.Type
		left        map[string]string
		tags        bool
	}{
		{state: reflect.TypeFor[cluster.Host](), wire: reflect.TypeFor[api.Host](), tags: true},
		{state: reflect.TypeFor[cluster.HostUsage](), wire: reflect.TypeFor[api.Host](), tags: true},
		{state: reflect.TypeFor[cluster.StaleCopy](), wire: reflect.TypeFor[api.StaleCopyView](), tags: true},
		{state: reflect.TypeFor[cluster.Silence](), wire: reflect.TypeFor[api.Silence](), tags: true},
		{state: reflect.TypeFor[cluster.VM](), wire: reflect.TypeFor[api.VMView](), tags: true, left: map[string]string{
			"definition":     "large and opaque: the API never shows it",
			"recreated_from": "bookkeeping of recoveries before ids were kept",
			"stale":          "read from old states only; stale copies are records of their own",
			"step_index":     "the raft index guarding inventory writes",
		}},
		{state: reflect.TypeFor[cluster.Operation](), wire: reflect.TypeFor[api.Operation](), tags: true, left: map[string]string{
			// The API's cancelled has always been the count of cancelled
			// items; the flag shows as state cancelled, or stopping.
			"cancelled": "the count of cancelled items",
		}},
		{state: reflect.TypeFor[cluster.OpItem](), wire: reflect.TypeFor[api.OpItem](), tags: true},
		{state: reflect.TypeFor[cluster.Event](), wire: reflect.TypeFor[api.Event](), tags: true},
		{state: reflect.TypeFor[gossip.Member](), wire: reflect.TypeFor[api.GossipMember](), tags: true},
		{state: reflect.TypeFor[raftnode.Stats](), wire: reflect.TypeFor[api.RaftStats](), tags: true},
		// PolicyInfo always had omitempty of its own.
		{state: reflect.TypeFor[cluster.Policy](), wire: reflect.TypeFor[api.PolicyInfo](), left: map[string]string{
			"yaml": "GET /v1/policy answers the policy itself as YAML",
		}},
	} {
		if miss := missingFields(tc.state, tc.wire, tc.left, tc.tags); miss != "" {
			t.Errorf("%s is not carried by %s: %s", tc.state, tc.wire, miss)
		}
	}
}

// TestWireEnumValues: the API's enumerations have the state's values.
func TestWireEnumValues(t *testing.T) {
	for _, p := range [][2]string{
		{string(api.Available), string(cluster.Available)},
		{string(api.NotAccepting), string(cluster.NotAccepting)},
		{string(api.InMaintenance), string(cluster.InMaintenance)},
		{string(api.Offline), string(cluster.Offline)},
		{string(api.MaintenanceOff), string(cluster.MaintenanceOff)},
		{string(api.MaintenanceEntering), string(cluster.MaintenanceEntering)},
		{string(api.MaintenanceOn), string(cluster.MaintenanceOn)},
		{string(api.MaintenanceError), string(cluster.MaintenanceError)},
		{string(api.MaintenanceCancelled), string(cluster.MaintenanceCancelled)},
		{string(api.MaintenanceExiting), string(cluster.MaintenanceExiting)},
		{string(api.HealthUnknown), string(cluster.HealthUnknown)},
		{string(api.HealthAlive), string(cluster.HealthAlive)},
		{string(api.HealthSuspect), string(cluster.HealthSuspect)},
		{string(api.HealthDead), string(cluster.HealthDead)},
		{string(api.HealthFenced), string(cluster.HealthFenced)},
		{string(api.Connected), string(cluster.Connected)},
		{string(api.Disconnected), string(cluster.Disconnected)},
		{string(api.NotResponding), string(cluster.NotResponding)},
		{string(api.PoweredOn), string(cluster.PoweredOn)},
		{string(api.PoweredOff), string(cluster.PoweredOff)},
		{string(api.Suspended), string(cluster.Suspended)},
		{string(api.OpEvacuate), string(cluster.OpEvacuate)},
		{string(api.OpExit), string(cluster.OpExit)},
		{string(api.OpMigrate), string(cluster.OpMigrate)},
		{string(api.OpBalance), string(cluster.OpBalance)},
		{string(api.OpRecover), string(cluster.OpRecover)},
		{string(api.OpRunning), string(cluster.OpRunning)},
		{string(api.OpSucceeded), string(cluster.OpSucceeded)},
		{string(api.OpFailed), string(cluster.OpFailed)},
		{string(api.OpCancelled), string(cluster.OpCancelled)},
		{api.ActionLiveMigrate, cluster.ActionLiveMigrate},
		{api.ActionOfflineMigrate, cluster.ActionOfflineMigrate},
		{api.ActionShutdown, cluster.ActionShutdown},
		{api.ActionPowerOn, cluster.ActionPowerOn},
		{api.ActionRecreate, cluster.ActionRecreate},
		{api.ActionRegister, cluster.ActionRegister},
		{api.ActionAwaitHost, cluster.ActionAwaitHost},
		{string(api.ItemPending), string(cluster.ItemPending)},
		{string(api.ItemRunning), string(cluster.ItemRunning)},
		{string(api.ItemDone), string(cluster.ItemDone)},
		{string(api.ItemFailed), string(cluster.ItemFailed)},
		{string(api.ItemCancelled), string(cluster.ItemCancelled)},
	} {
		if p[0] != p[1] {
			t.Errorf("api value %q, state value %q", p[0], p[1])
		}
	}
}
