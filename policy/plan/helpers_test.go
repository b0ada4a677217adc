package plan

import (
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy/placement"
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
const header = policytest.Header

// mustCompile compiles the policy of header+body against s.
func mustCompile(t testing.TB, s *cluster.State, body string) *placement.Compiled {
	t.Helper()
	return placement.Compile(policytest.MustParse(t, body), s)
}
