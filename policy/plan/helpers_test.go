package plan

import (
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/policytest"
)

// The synthetic states of policytest, under the names the tests use.
var (
	newCluster = policytest.NewCluster
	setHost    = policytest.SetHost
	addVM      = policytest.AddVM
	setVM      = policytest.SetVM
	inventory  = policytest.Inventory
)

// header opens every test policy.
const header = "apiVersion: herd/v1\nkind: Policy\n"

// mustCompile compiles the policy of header+body against s.
func mustCompile(t testing.TB, s *cluster.State, body string) *policy.Compiled {
	t.Helper()
	d, err := policy.Parse("test.yaml", []byte(header+body))
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	return policy.Compile(d, s)
}
