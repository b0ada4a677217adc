package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// Test API tokens: one per role, and the servers' own.
const (
	AdminToken  = "admin-secret-0123456789abcdef"
	OpToken     = "operate-secret-0123456789abcd"
	ReadToken   = "read-secret-0123456789abcdef0"
	ServerToken = "server-secret-0123456789abcdef"
)

// WriteTokens writes a tokens file (alice: admin by file, ci: operate by
// digest, grafana: read by file) and a server token file.
func WriteTokens(t testing.TB) (tokensFile, serverTokenFile string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sum := sha256.Sum256([]byte(OpToken))
	tokensFile = write("tokens.yaml", "tokens:\n"+
		"  - name: alice\n    role: admin\n    token_file: "+write("alice.token", AdminToken+"\n")+"\n"+
		"  - name: ci\n    role: operate\n    token_sha256: "+hex.EncodeToString(sum[:])+"\n"+
		"  - name: grafana\n    role: read\n    token_file: "+write("grafana.token", ReadToken)+"\n")
	return tokensFile, write("server.token", ServerToken+"\n")
}
