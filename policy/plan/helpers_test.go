package plan

import (
	"testing"

	"github.com/herd-project/herd/cluster"
	"github.com/herd-project/herd/policy/placement"
	"github.com/herd-project/herd/policy/policytest"
)

// header opens every test policy.
const header = policytest.Header

// mustCompile compiles the policy of header+body against s.
func mustCompile(t testing.TB, s *cluster.State, body string) *placement.Compiled {
	t.Helper()
	return placement.Compile(policytest.MustParse(t, body), s)
}
