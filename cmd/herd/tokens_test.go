package main

import (
	"os"
	"path/filepath"
	"testing"
)

// testTokens are API token files for server processes started by tests.
type testTokens struct {
	file, server string // tokens_file, server_token_file
	admin, read  string // secrets
}

func writeTestTokens(t *testing.T) testTokens {
	t.Helper()
	dir := t.TempDir()
	tt := testTokens{admin: "cli-admin-token-0123456789", read: "cli-read-token-0123456789ab"}
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tt.server = write("server.token", "cli-server-token-0123456789\n")
	tt.file = write("tokens.yaml", "tokens:\n"+
		"  - name: admin\n    role: admin\n    token_file: "+write("admin.token", tt.admin)+"\n"+
		"  - name: viewer\n    role: read\n    token_file: "+write("read.token", tt.read)+"\n")
	return tt
}
