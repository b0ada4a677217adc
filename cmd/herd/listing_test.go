package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/daemon/api"
)

// TestHostListingsTellWhy: host ls counts a host's stale copies and says
// in a column of its own why a dead host is not fenced; host show lists
// the stale copies and says they are destroyed when the host returns.
func TestHostListingsTellWhy(t *testing.T) {
	fenced := api.Host{Name: "h1", Admin: api.Offline, Health: api.HealthFenced, StaleCopies: 2,
		Stale: []api.StaleCopyView{
			{VM: "id-a", ID: "id-a", Name: "web", Host: "h1", VMHost: "h2", Power: "unknown"},
			{VM: "id-b", ID: "id-b", Name: "db", Host: "h1", VMHost: "h3", Power: "unknown"},
		}}
	dead := api.Host{Name: "h4", Admin: api.Available, Health: api.HealthDead,
		NotFenced: "storm guard: 2 of 3 hosts look dead (more than 50%)"}
	var out bytes.Buffer
	g := &globals{stdout: &out}
	if err := printHosts(g, []api.Host{fenced, dead}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "STALE") || !strings.HasSuffix(lines[0], "NOT FENCED BECAUSE") {
		t.Fatalf("host ls:\n%s", out.String())
	}
	col := strings.Index(lines[0], "STALE")
	if !strings.HasPrefix(lines[1][col:], "2 ") || !strings.HasSuffix(lines[1], " -") {
		t.Errorf("fenced host's row: %q", lines[1])
	}
	if !strings.HasSuffix(lines[2], "storm guard: 2 of 3 hosts look dead (more than 50%)") {
		t.Errorf("dead host's row: %q", lines[2])
	}
	out.Reset()
	if err := printHost(g, &fenced); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Stale copies  2, destroyed when the host returns", "web (id-a); the VM is on h2", "db (id-b); the VM is on h3"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("host show lacks %q:\n%s", want, out.String())
		}
	}
}

// TestVMListingShowsGroups: vm ls shows the priority the API gives (the
// effective one) and the VM's groups.
func TestVMListingShowsGroups(t *testing.T) {
	var out bytes.Buffer
	vms := []api.VMView{{ID: "id-a", Name: "web", Host: "h1", Power: api.PoweredOn, Priority: 100, Groups: []string{"critical", "frontend"}},
		{ID: "id-b", Name: "db", Host: "h2", Power: api.PoweredOff}}
	if err := printVMs(&globals{stdout: &out}, vms); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "PRIORITY  GROUPS") {
		t.Fatalf("vm ls:\n%s", out.String())
	}
	if f := strings.Fields(lines[1]); f[5] != "100" || f[6] != "critical,frontend" {
		t.Errorf("row %q", lines[1])
	}
	if f := strings.Fields(lines[2]); f[5] != "0" || f[6] != "-" {
		t.Errorf("row %q", lines[2])
	}
}

// TestHostShowTellsTheSilence: host show names the Alertmanager silence
// of a host in maintenance and until when it runs.
func TestHostShowTellsTheSilence(t *testing.T) {
	ends := time.Date(2026, 3, 4, 5, 6, 7, 0, time.Local)
	h := api.Host{Name: "h1", Admin: api.Available, Maintenance: api.MaintenanceOn,
		Silence: &api.Silence{Host: "h1", ID: "5f1c", EndsAt: ends}}
	var out bytes.Buffer
	if err := printHost(&globals{stdout: &out}, &h); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Alertmanager silence  5f1c, until 2026-03-04 05:06:07") {
		t.Errorf("host show:\n%s", out.String())
	}
}
