// Package yamlfile reads YAML documents strictly: unknown keys are errors,
// and every error names the file, line, column and key path, all at once.
package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is one problem in a file.
type Error struct {
	File   string
	Line   int
	Column int
	Path   string // key path, e.g. drivers[0].url
	Msg    string
}

func (e *Error) Error() string {
	pos := e.File
	if e.Line > 0 {
		pos = fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Column)
	}
	if e.Path != "" {
		return fmt.Sprintf("%s: %s: %s", pos, e.Path, e.Msg)
	}
	return fmt.Sprintf("%s: %s", pos, e.Msg)
}

// Errors is every problem found in a file.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Doc is a parsed document that remembers where each key was.
type Doc struct {
	File string
	Root *yaml.Node
}

// Decode parses data into out (a pointer to a struct with yaml tags). It
// reports unknown keys and type errors together.
func Decode(file string, data []byte, out any) (*Doc, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Errors{syntaxError(file, err)}
	}
	doc := &Doc{File: file, Root: &root}
	if len(bytes.TrimSpace(data)) == 0 || root.Kind == 0 {
		return doc, nil
	}
	var errs Errors
	body := &root
	if body.Kind == yaml.DocumentNode && len(body.Content) > 0 {
		body = body.Content[0]
	}
	// Duplicate keys and aliases make the decoded values untrustworthy:
	// they are reported alone, each where it is, and nothing is checked
	// against what they would have meant.
	checkStructure(file, body, "", &errs)
	if len(errs) > 0 {
		sortErrors(errs)
		return nil, errs
	}
	checkKeys(file, body, reflect.TypeOf(out), "", &errs)
	if err := body.Decode(out); err != nil {
		errs = append(errs, typeErrors(file, body, err)...)
	}
	if len(errs) > 0 {
		sortErrors(errs)
		return doc, errs
	}
	return doc, nil
}

var lineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

func syntaxError(file string, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: line, Column: 1, Msg: m[2]}
	}
	return &Error{File: file, Msg: msg}
}

// typeErrors turns yaml.v3's "line N: cannot unmarshal …" into Errors with
// the key path of the offending value.
func typeErrors(file string, body *yaml.Node, err error) Errors {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return Errors{syntaxError(file, err)}
	}
	var out Errors
	for _, m := range te.Errors {
		e := &Error{File: file, Msg: m}
		if sm := lineRE.FindStringSubmatch(m); sm != nil {
			e.Line, _ = strconv.Atoi(sm[1])
			e.Msg = sm[2]
			if p, n := findByLine(body, e.Line, ""); n != nil {
				e.Path, e.Column = p, n.Column
			}
		}
		out = append(out, e)
	}
	return out
}

// findByLine finds the value node on line (the innermost one).
func findByLine(n *yaml.Node, line int, path string) (string, *yaml.Node) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(path, k.Value)
			if v.Line == line && v.Kind == yaml.ScalarNode {
				return p, v
			}
			if pp, nn := findByLine(v, line, p); nn != nil {
				return pp, nn
			}
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if v.Line == line && v.Kind == yaml.ScalarNode {
				return p, v
			}
			if pp, nn := findByLine(v, line, p); nn != nil {
				return pp, nn
			}
		}
	}
	return "", nil
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// checkKeys walks n against type t and reports mapping keys that t has no
// field for.
func checkKeys(file string, n *yaml.Node, t reflect.Type, path string, errs *Errors) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // type error, reported by Decode
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				*errs = append(*errs, &Error{File: file, Line: k.Line, Column: k.Column, Path: joinPath(path, k.Value),
					Msg: fmt.Sprintf("unknown field %q%s", k.Value, suggest(k.Value, fields))})
				continue
			}
			checkKeys(file, v, ft, joinPath(path, k.Value), errs)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, v := range n.Content {
			checkKeys(file, v, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkKeys(file, n.Content[i+1], t.Elem(), joinPath(path, n.Content[i].Value), errs)
		}
	}
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func suggest(key string, fields map[string]reflect.Type) string {
	var names []string
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	norm := func(s string) string { return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s)) }
	best, bestD := "", 3
	for _, n := range names {
		if d := EditDistance(norm(key), norm(n)); d < bestD {
			best, bestD = n, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return fmt.Sprintf(" (known: %s)", strings.Join(names, ", "))
}

// EditDistance is the Levenshtein distance between a and b (in bytes),
// for "did you mean" hints.
func EditDistance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func sortErrors(errs Errors) {
	sort.SliceStable(errs, func(i, j int) bool {
		if errs[i].Line != errs[j].Line {
			return errs[i].Line < errs[j].Line
		}
		return errs[i].Column < errs[j].Column
	})
}

// At returns an Error for key path (dots and [i]) positioned where the path
// is in the document, or at the nearest parent that exists.
func (d *Doc) At(path string, format string, args ...any) *Error {
	e := &Error{File: d.File, Path: path, Msg: fmt.Sprintf(format, args...)}
	if d == nil || d.Root == nil {
		return e
	}
	n := d.Root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind == 0 {
		return e
	}
	e.Line, e.Column = n.Line, n.Column
	for _, part := range splitPath(path) {
		next := step(n, part)
		if next == nil {
			break
		}
		n = next
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

func splitPath(path string) []string {
	var parts []string
	for _, p := range strings.Split(path, ".") {
		for {
			i := strings.IndexByte(p, '[')
			if i < 0 {
				break
			}
			if i > 0 {
				parts = append(parts, p[:i])
			}
			j := strings.IndexByte(p, ']')
			if j < i {
				break
			}
			parts = append(parts, p[i:j+1])
			p = p[j+1:]
		}
		if p != "" {
			parts = append(parts, p)
		}
	}
	return parts
}

func step(n *yaml.Node, part string) *yaml.Node {
	if strings.HasPrefix(part, "[") {
		i, err := strconv.Atoi(strings.Trim(part, "[]"))
		if err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
			return nil
		}
		return n.Content[i]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == part {
			return n.Content[i+1]
		}
	}
	return nil
}

// checkStructure reports duplicate mapping keys (at the second one, naming
// the first) and YAML aliases, with their line, column and key path.
func checkStructure(file string, n *yaml.Node, path string, errs *Errors) {
	switch n.Kind {
	case yaml.AliasNode:
		name := n.Value
		*errs = append(*errs, &Error{File: file, Line: n.Line, Column: n.Column, Path: path,
			Msg: fmt.Sprintf("YAML alias *%s is not allowed here: write the value out", name)})
	case yaml.MappingNode:
		seen := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(path, k.Value)
			if k.Kind == yaml.AliasNode || k.Tag == "!!merge" {
				*errs = append(*errs, &Error{File: file, Line: k.Line, Column: k.Column, Path: p,
					Msg: "YAML aliases and merge keys (<<) are not allowed here: write the values out"})
				continue
			}
			if first := seen[k.Value]; first != nil {
				*errs = append(*errs, &Error{File: file, Line: k.Line, Column: k.Column, Path: p,
					Msg: fmt.Sprintf("duplicate key %q (first at line %d)", k.Value, first.Line)})
				continue
			}
			seen[k.Value] = k
			checkStructure(file, v, p, errs)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			checkStructure(file, v, fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case yaml.DocumentNode:
		for _, v := range n.Content {
			checkStructure(file, v, path, errs)
		}
	}
}
