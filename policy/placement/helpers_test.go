package placement

import (
	"strings"

	"github.com/herd-project/herd/policy/policytest"
)

// header opens every test policy.
const header = policytest.Header

// ids lists the VM ids of items.
func ids(items []Item) string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.VM
	}
	return strings.Join(out, ",")
}

// targets counts items by target.
func targets(items []Item) map[string]int {
	m := map[string]int{}
	for _, it := range items {
		m[it.Target]++
	}
	return m
}
