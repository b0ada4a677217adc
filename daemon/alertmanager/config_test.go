package alertmanager

import (
	"os/exec"
	"testing"

	"github.com/herd-project/herd/internal/testutil"
)

// The shipped example configuration is one Alertmanager accepts.
func TestExampleAlertmanagerConfig(t *testing.T) {
	amtool := testutil.NeedProgram(t, "amtool", "prometheus-alertmanager")
	out, err := exec.Command(amtool, "check-config", "../../configs/prometheus/alertmanager.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("amtool check-config: %v\n%s", err, out)
	}
}
