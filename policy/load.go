package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/herd-project/herd/policy/yamlfile"
)

// Parse reads a policy document strictly and validates it. Defaults are
// applied to every key the file leaves out before validation, so an empty
// document (apiVersion and kind only) is a valid policy. On failure the error
// is a yamlfile.Errors holding every problem found, each naming the file,
// line, column and key path, such as
//
//	policy.yaml:12:15: rules[1].vm_group: unknown vm group "dbs" (did you mean "db"?)
func Parse(file string, data []byte) (*Document, error) {
	var d Document
	doc, err := yamlfile.Decode(file, data, &d)
	var errs yamlfile.Errors
	if err != nil {
		if doc == nil || !errors.As(err, &errs) {
			return nil, err // a syntax error: nothing to validate
		}
		errs = plainTypeErrors(errs, rootNode(doc))
	}
	root := rootNode(doc)
	errs = append(errs, wholeNumbers(file, root.n, "")...)
	setDefaults(&d, root)
	normalize(&d)
	errs = merge(errs, validate(&d, doc))
	if len(errs) > 0 {
		return nil, errs
	}
	return &d, nil
}

// LoadFile reads and parses the policy file at path.
func LoadFile(path string) (*Document, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return Parse(path, data)
}

// Default returns the policy in force when none is given: every default.
func Default() *Document {
	d := &Document{APIVersion: APIVersion, Kind: Kind}
	setDefaults(d, node{})
	return d
}

// YAML returns the canonical encoding of d: every key, defaults filled in,
// in schema order, two-space indented. It is what GET /v1/policy answers and
// what Hash digests; parsing it gives d back.
func (d *Document) YAML() ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(d); err != nil {
		return nil, fmt.Errorf("encode policy: %w", err)
	}
	shortDurations(&n)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, fmt.Errorf("encode policy: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode policy: %w", err)
	}
	return b.Bytes(), nil
}

// Hash returns the hex SHA-256 of the canonical encoding (YAML): equal for
// documents that mean the same, whatever their comments, key order or
// omitted defaults. It is "" only for a document that cannot be encoded,
// which no parsed document is.
func (d *Document) Hash() string {
	y, err := d.YAML()
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(y)
	return hex.EncodeToString(sum[:])
}

// durationKeys are the schema's duration keys.
var durationKeys = map[string]bool{
	"migration_timeout": true, "shutdown_timeout": true, "no_progress_timeout": true,
	"retry_backoff": true, "interval": true, "timeout": true,
	"suspect_after": true, "dead_after": true, "alive_after": true,
	"lease_ttl": true, "lease_margin": true, "max_backoff": true, "confirm_timeout": true, "hold": true,
	"silence_duration": true,
}

// shortDurations writes durations as people do: 30m, not 30m0s.
func shortDurations(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if v := n.Content[i+1]; durationKeys[n.Content[i].Value] && v.Kind == yaml.ScalarNode {
				if strings.HasSuffix(v.Value, "m0s") {
					v.Value = strings.TrimSuffix(v.Value, "0s")
				}
				if strings.HasSuffix(v.Value, "h0m") {
					v.Value = strings.TrimSuffix(v.Value, "0m")
				}
			}
		}
	}
	for _, c := range n.Content {
		shortDurations(c)
	}
}

// normalize turns empty lists and maps into nil ones, so that a document
// and its canonical encoding parsed again are deeply equal.
func normalize(d *Document) {
	if len(d.HostGroups) == 0 {
		d.HostGroups = nil
	}
	if len(d.VMGroups) == 0 {
		d.VMGroups = nil
	}
	if len(d.Rules) == 0 {
		d.Rules = nil
	}
	if len(d.DisruptionBudgets) == 0 {
		d.DisruptionBudgets = nil
	}
	for i := range d.HostGroups {
		g := &d.HostGroups[i]
		if len(g.Hosts) == 0 {
			g.Hosts = nil
		}
		if len(g.Selector) == 0 {
			g.Selector = nil
		}
	}
	for i := range d.VMGroups {
		if len(d.VMGroups[i].VMs) == 0 {
			d.VMGroups[i].VMs = nil
		}
	}
	if len(d.Windows) == 0 {
		d.Windows = nil
	}
	for i := range d.Windows {
		if len(d.Windows[i].Days) == 0 {
			d.Windows[i].Days = nil
		}
	}
	normalizeRollout(&d.Rollout)
	normalizeAlertmanager(d.Alertmanager)
	r := &d.Recovery
	if len(r.ExcludeVMGroups) == 0 {
		r.ExcludeVMGroups = nil
	}
	if len(r.Fencing) == 0 {
		r.Fencing = nil
	}
	for i := range r.Fencing {
		m := &r.Fencing[i]
		if len(m.Hosts) == 0 {
			m.Hosts = nil
		}
		if len(m.Params) == 0 {
			m.Params = nil
		}
		if len(m.HostParams) == 0 {
			m.HostParams = nil
		}
		if len(m.SecretFiles) == 0 {
			m.SecretFiles = nil
		}
	}
}

// merge adds the validation errors to the decoding ones, leaving out those
// about a value that already failed to decode (it reads as zero), and sorts
// them all by position.
func merge(decoded, checked yamlfile.Errors) yamlfile.Errors {
	out := decoded
	for _, e := range checked {
		dup := false
		for _, de := range decoded {
			if de.Path != "" && (e.Path == de.Path || strings.HasPrefix(e.Path, de.Path+".") || strings.HasPrefix(e.Path, de.Path+"[")) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Line != out[j].Line {
			return out[i].Line < out[j].Line
		}
		return out[i].Column < out[j].Column
	})
	return out
}

var unmarshalRE = regexp.MustCompile("^cannot unmarshal !!(\\w+) (?:`(.*)` )?into (.+)$")

// plainTypeErrors rewrites yaml.v3's "cannot unmarshal !!str `x` into int"
// in the words of the schema: "must be a whole number, got "x"". A list or
// mapping where a value belongs is reported at its own key path, not at the
// first value inside it.
func plainTypeErrors(errs yamlfile.Errors, root node) yamlfile.Errors {
	for _, e := range errs {
		m := unmarshalRE.FindStringSubmatch(e.Msg)
		if m == nil {
			continue
		}
		tag, value, into := m[1], m[2], m[3]
		if tag == "seq" || tag == "map" {
			e.Path, e.Column = collectionAt(root, e.Path, e.Line, e.Column)
		}
		got := map[string]string{"seq": "a list", "map": "a mapping"}[tag]
		if got == "" {
			got = value
			if tag == "str" {
				got = fmt.Sprintf("%q", value)
			}
		}
		switch {
		case into == "time.Duration" && tag == "str":
			e.Msg = fmt.Sprintf("invalid duration %q: use a number and a unit, such as 90s, 5m or 1h", value)
		case into == "time.Duration" && (tag == "int" || tag == "float"):
			e.Msg = fmt.Sprintf("invalid duration %s: a unit is needed, such as %ss or %sm", value, value, value)
		case into == "int":
			e.Msg = "must be a whole number, got " + got
		case into == "float64":
			e.Msg = "must be a number, got " + got
		case into == "bool":
			e.Msg = "must be true or false, got " + got
		case into == "string":
			e.Msg = "must be a string, got " + got
		case strings.HasPrefix(into, "[]"):
			e.Msg = "must be a list, got " + got
		case strings.HasPrefix(into, "map["), strings.HasPrefix(into, "policy."), strings.HasPrefix(into, "*policy."):
			e.Msg = "must be a mapping, got " + got
		}
	}
	return errs
}

// collectionAt returns the longest prefix of path (path itself included)
// that names a list or mapping starting on line, and its column.
func collectionAt(root node, path string, line, column int) (string, int) {
	parts := splitPath(path)
	for n := len(parts); n >= 0; n-- {
		at := root
		for _, p := range parts[:n] {
			at = at.step(p)
		}
		if at.n != nil && at.n.Line == line && (at.n.Kind == yaml.SequenceNode || at.n.Kind == yaml.MappingNode) {
			return strings.Join(parts[:n], ""), at.n.Column
		}
	}
	return path, column
}

// splitPath splits a key path such as rules[2].vm_group into steps that
// joined give it back: "rules", "[2]", ".vm_group".
func splitPath(path string) []string {
	var parts []string
	start := 0
	for i := 1; i <= len(path); i++ {
		if i == len(path) || path[i] == '.' || path[i] == '[' {
			parts = append(parts, path[start:i])
			start = i
		}
	}
	return parts
}
