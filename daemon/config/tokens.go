package config

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/herd-project/herd/policy/yamlfile"
)

// Role is what a token may do; each role includes the ones below it.
type Role int

// Roles, weakest first.
const (
	RoleNone Role = iota
	RoleRead
	RoleOperate
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RoleRead:
		return "read"
	case RoleOperate:
		return "operate"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

func ParseRole(s string) (Role, bool) {
	switch s {
	case "read":
		return RoleRead, true
	case "operate":
		return RoleOperate, true
	case "admin":
		return RoleAdmin, true
	}
	return RoleNone, false
}

// minTokenLen is the shortest secret accepted in a token file.
const minTokenLen = 16

// ServerTokenName names the servers' internal token in events.
const ServerTokenName = "server"

// tokensFile is the format of api.tokens_file.
type tokensFile struct {
	Tokens []tokenEntry `yaml:"tokens"`
}

// tokenEntry is one API token. The secret is never in the tokens file:
// either its SHA-256 (hex) or the path of a file holding it.
type tokenEntry struct {
	Name        string `yaml:"name"`
	Role        string `yaml:"role"`
	TokenSHA256 string `yaml:"token_sha256"`
	TokenFile   string `yaml:"token_file"`
}

// Principal is an authenticated caller.
type Principal struct {
	Name string
	Role Role
}

// Tokens maps token digests to who holds them.
type Tokens struct {
	digests [][sha256.Size]byte
	holders []Principal
}

var (
	tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	sha256HexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// loadTokens reads and validates a tokens file and the servers' internal
// token (serverTokenFile, may be empty). Errors name file:line and field.
func loadTokens(path, serverTokenFile string) (*Tokens, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tokens file: %w", err)
	}
	var tf tokensFile
	doc, err := yamlfile.Decode(path, data, &tf)
	if err != nil {
		return nil, err
	}
	var errs yamlfile.Errors
	set := &Tokens{}
	names := map[string]bool{ServerTokenName: true}
	add := func(p string, d [sha256.Size]byte, pr Principal) {
		for _, have := range set.digests {
			if have == d {
				errs = append(errs, doc.At(p, "the same token is listed twice"))
				return
			}
		}
		set.digests = append(set.digests, d)
		set.holders = append(set.holders, pr)
	}
	if len(tf.Tokens) == 0 {
		errs = append(errs, doc.At("tokens", "must list at least one token"))
	}
	for i, t := range tf.Tokens {
		p := fmt.Sprintf("tokens[%d]", i)
		switch {
		case !tokenNameRE.MatchString(t.Name):
			errs = append(errs, doc.At(p+".name", "%q is not a valid token name (letters, digits, '.', '_', '-'; at most 63)", t.Name))
		case names[t.Name]:
			errs = append(errs, doc.At(p+".name", "%q is used twice (or is reserved)", t.Name))
		}
		names[t.Name] = true
		role, ok := ParseRole(t.Role)
		if !ok {
			errs = append(errs, doc.At(p+".role", "%q is not one of read, operate, admin", t.Role))
		}
		switch {
		case t.TokenSHA256 != "" && t.TokenFile != "":
			errs = append(errs, doc.At(p+".token_file", "set token_sha256 or token_file, not both"))
		case t.TokenSHA256 != "":
			if !sha256HexRE.MatchString(t.TokenSHA256) {
				errs = append(errs, doc.At(p+".token_sha256", "must be 64 lower-case hex digits (sha256sum of the token)"))
				continue
			}
			var d [sha256.Size]byte
			hex.Decode(d[:], []byte(t.TokenSHA256))
			if ok {
				add(p+".token_sha256", d, Principal{Name: t.Name, Role: role})
			}
		case t.TokenFile != "":
			secret, err := readSecret(t.TokenFile)
			if err != nil {
				errs = append(errs, doc.At(p+".token_file", "%v", err))
				continue
			}
			if ok {
				add(p+".token_file", sha256.Sum256(secret), Principal{Name: t.Name, Role: role})
			}
		default:
			errs = append(errs, doc.At(p, "set token_sha256 or token_file"))
		}
	}
	if serverTokenFile != "" {
		secret, err := readSecret(serverTokenFile)
		if err != nil {
			errs = append(errs, &yamlfile.Error{File: path, Path: "api.server_token_file", Msg: err.Error()})
		} else {
			add("tokens", sha256.Sum256(secret), Principal{Name: ServerTokenName, Role: RoleAdmin})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return set, nil
}

// readSecret reads a token from a file: one line, no blanks inside, at
// least minTokenLen bytes. The error never contains the secret.
func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if len(s) < minTokenLen {
		return nil, fmt.Errorf("%s: the token is shorter than %d bytes", path, minTokenLen)
	}
	for _, c := range s {
		if c <= ' ' || c == 0x7f {
			return nil, fmt.Errorf("%s: the token must be one line of printable characters without blanks", path)
		}
	}
	return []byte(s), nil
}

// Lookup finds the holder of a presented token. Every digest is compared,
// in constant time, whether or not an earlier one matched.
func (ts *Tokens) Lookup(token string) (Principal, bool) {
	d := sha256.Sum256([]byte(token))
	found := -1
	for i := range ts.digests {
		if subtle.ConstantTimeCompare(d[:], ts.digests[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Principal{}, false
	}
	return ts.holders[found], true
}
