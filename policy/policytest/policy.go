package policytest

import (
	"testing"

	"github.com/herd-project/herd/policy"
)

// Header opens every test policy.
const Header = "apiVersion: herd/v1\nkind: Policy\n"

// MustParse parses the policy of Header+body, failing t on an error.
func MustParse(t testing.TB, body string) *policy.Document {
	t.Helper()
	d, err := policy.Parse("test.yaml", []byte(Header+body))
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	return d
}
