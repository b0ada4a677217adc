package failover

import "github.com/herd-project/herd/policy/policytest"

const gib = policytest.GiB

// The synthetic states of policytest, under the names the tests use.
var (
	setHost       = policytest.SetHost
	addVM         = policytest.AddVM
	setVM         = policytest.SetVM
	unevenCluster = policytest.UnevenCluster
	uniformSizes  = policytest.UniformSizes
	build         = policytest.Build
)
