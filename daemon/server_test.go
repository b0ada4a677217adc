package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
	"github.com/herd-project/herd/drivers/vsphere"
	"github.com/herd-project/herd/internal/testutil"
)

func testOptions(t testing.TB) Options {
	return Options{Logger: testutil.Logger(t), RaftHeartbeat: 200 * time.Millisecond,
		RaftElection: 200 * time.Millisecond, RaftLease: 100 * time.Millisecond}
}

func startDev(t *testing.T, hosts, vms int) (*DevServer, *api.Client) {
	t.Helper()
	dev := StartTestDev(t, DevOptions{Hosts: hosts, VMs: vms})
	c, err := api.NewClient(dev.APIAddr(), "")
	if err != nil {
		t.Fatal(err)
	}
	return dev, c
}

// errorCase is a request that must be refused with code, naming field.
type errorCase struct {
	name, method, path, body string
	code                     int
	field                    string
}

// checkErrorAnswers sends each request and checks the code and error body.
func checkErrorAnswers(t *testing.T, base string, tests []errorCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(context.Background(), tt.method, base+tt.path, strings.NewReader(tt.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e api.Error
			if resp.StatusCode != tt.code {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.code, b)
			}
			if err := jsonDecode(resp.Body, &e); err != nil || e.Error == "" || e.Field != tt.field {
				t.Fatalf("error body %+v (%v), want field %q", e, err, tt.field)
			}
		})
	}
}

// waitInventory waits until the API lists the given numbers of hosts and VMs.
func waitInventory(t testing.TB, c *api.Client, hosts, vms int) []api.Host {
	t.Helper()
	var got []api.Host
	testutil.WaitFor(t, 20*time.Second, fmt.Sprintf("%d hosts and %d VMs in the API", hosts, vms), func() bool {
		hs, err := c.Hosts(context.Background())
		if err != nil || len(hs) != hosts {
			return false
		}
		n := 0
		for _, h := range hs {
			n += h.VMs
		}
		got = hs
		return n == vms
	})
	return got
}

func TestDevServerSyncsSimulatorInventory(t *testing.T) {
	dev, c := startDev(t, 3, 12)
	hosts := waitInventory(t, c, 3, 12)
	names := dev.Sim.HostNames()
	for _, h := range hosts {
		if h.MemoryBytes <= 0 || h.CPUs <= 0 || h.Connection != api.Connected || h.Admin != api.Available || h.Driver != "dev" {
			t.Errorf("host %+v", h)
		}
	}
	if len(names) != 3 {
		t.Fatalf("simulator hosts %v", names)
	}
	ctx := context.Background()
	vms, err := c.VMs(ctx, hosts[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(vms) != hosts[0].VMs {
		t.Fatalf("vm ls --host %s: %d VMs, host says %d", hosts[0].Name, len(vms), hosts[0].VMs)
	}
	var used int64
	for _, vm := range vms {
		if vm.Host != hosts[0].Name || vm.MemoryBytes <= 0 || vm.ID == "" {
			t.Fatalf("vm %+v", vm)
		}
		if vm.Power == api.PoweredOn {
			used += vm.MemoryBytes
		}
	}
	if used != hosts[0].MemoryUsedBytes {
		t.Fatalf("host memory used %d, sum of running VMs %d", hosts[0].MemoryUsedBytes, used)
	}

	// The first sync is in the action log; a no-change sync writes nothing.
	ev, err := c.Events(ctx, api.EventQuery{Host: hosts[0].Name})
	if err != nil || len(ev.Events) == 0 || ev.Events[0].Type != "inventory.host_added" {
		t.Fatalf("events for %s: %+v %v", hosts[0].Name, ev, err)
	}
	before := dev.Node().FSM().State().Index
	res, err := dev.SyncInventory(ctx, "dev")
	if err != nil || !res.Diff.Empty() || dev.Node().FSM().State().Index != before {
		t.Fatalf("no-change sync: %+v %v (index %d → %d)", res, err, before, dev.Node().FSM().State().Index)
	}

	// A change made behind Herd's back (a vMotion in vCenter) is found.
	d, err := vsphere.New(ctx, dev.Sim.Config(), testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var moved api.VMView
	for _, vm := range vms {
		if vm.Power == api.PoweredOn {
			moved = vm
			break
		}
	}
	if err := d.Migrate(ctx, moved.ID, hosts[1].Name, "live"); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.SyncInventory(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
	if got := dev.Node().FSM().State().VMs[moved.ID]; got.Host != hosts[1].Name {
		t.Fatalf("after a vMotion behind Herd's back, state says VM is on %s, want %s", got.Host, hosts[1].Name)
	}
	ev, _ = c.Events(ctx, api.EventQuery{VM: moved.ID})
	if last := ev.Events[len(ev.Events)-1]; last.Type != "inventory.vm_moved" {
		t.Fatalf("last event of the moved VM: %+v", last)
	}

	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(dev.APIAddr() + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", path, resp, err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(dev.APIAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		fmt.Sprintf(`herd_host_vms{host=%q}`, hosts[0].Name),
		`herd_raft_leader 1`,
		`herd_inventory_syncs_total{driver="dev",result="ok"}`,
		`herd_api_requests_total{code="200",method="GET",route="/v1/hosts"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestAPIErrors(t *testing.T) {
	dev, c := startDev(t, 2, 2)
	hosts := waitInventory(t, c, 2, 2)
	ctx := context.Background()
	h := hosts[0].Name
	tests := []errorCase{
		{"unknown host", "GET", "/v1/hosts/nope", "", 404, "host"},
		{"vms of unknown host", "GET", "/v1/vms?host=nope", "", 404, "host"},
		{"bad since", "GET", "/v1/events?since=yesterday", "", 400, "since"},
		{"bad limit", "GET", "/v1/events?limit=-1", "", 400, "limit"},
		{"unknown field", "PUT", "/v1/hosts/" + h + "/status", `{"status":"NOT_ACCEPTING","colour":"red"}`, 400, "colour"},
		{"bad status", "PUT", "/v1/hosts/" + h + "/status", `{"status":"ASLEEP"}`, 400, "status"},
		{"bad type", "PUT", "/v1/hosts/" + h + "/status", `{"status":1}`, 400, "status"},
		{"confirm without offline", "PUT", "/v1/hosts/" + h + "/status", `{"status":"AVAILABLE","confirm_fenced":true}`, 400, "confirm_fenced"},
		{"trailing data", "PUT", "/v1/hosts/" + h + "/status", `{"status":"AVAILABLE"} {}`, 400, ""},
		{"empty body", "PUT", "/v1/hosts/" + h + "/status", ``, 400, ""},
		{"status of unknown host", "PUT", "/v1/hosts/nope/status", `{"status":"AVAILABLE"}`, 404, "host"},
		{"no such endpoint", "GET", "/v2/hosts", "", 404, ""},
	}
	before := dev.Node().FSM().State()
	checkErrorAnswers(t, c.Base, tests)
	checkRequestsChangedNothing(t, before, dev.Node().FSM().State())

	// A good one changes the host and is in the log with its actor.
	got, err := c.SetHostStatus(ctx, h, api.StatusRequest{Status: "NOT_ACCEPTING", Reason: "firmware"})
	if err != nil || got.Admin != api.NotAccepting || got.AdminReason != "firmware" {
		t.Fatalf("set status: %+v %v", got, err)
	}
	evs := queryEvents(t, c, api.EventQuery{Host: h})
	if e, ok := lastOfType(evs, "host.status"); !ok || !strings.HasPrefix(e.Actor, "api:") {
		t.Fatalf("status event: %+v", evs)
	}
	// MAINTENANCE through the status endpoint closes the host without moving anything.
	if _, err := c.SetHostStatus(ctx, h, api.StatusRequest{Status: "MAINTENANCE"}); err != nil {
		t.Fatalf("MAINTENANCE through status: %v", err)
	}
	if hh, _ := c.Host(ctx, h); hh.Maintenance != api.MaintenanceOn || hh.Admin != api.InMaintenance || hh.VMs != hosts[0].VMs {
		t.Fatalf("host after status MAINTENANCE: %+v", hh)
	}
	var se *api.StatusError
	if _, err := c.SetHostStatus(ctx, h, api.StatusRequest{Status: "AVAILABLE"}); !errors.As(err, &se) || se.Code != 409 {
		t.Fatalf("AVAILABLE on a host in maintenance: %v", err)
	}
}
