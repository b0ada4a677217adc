package yamlfile

import "testing"

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"abc", "", 3},
		{"strategy", "strategy", 0},
		{"stratgy", "strategy", 1},
		{"power-savings", "power-saving", 1},
		{"kitten", "sitting", 3},
		{"pack", "spread", 5},
	} {
		if got := EditDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestDuplicateKeysAndAliases: each is reported alone, at its own line and
// column, with its key path; nothing else is checked.
func TestDuplicateKeysAndAliases(t *testing.T) {
	type inner struct {
		N int    `yaml:"n"`
		S string `yaml:"s"`
	}
	type doc struct {
		A inner   `yaml:"a"`
		B inner   `yaml:"b"`
		L []inner `yaml:"l"`
	}
	for _, tc := range []struct {
		name, in, want string
	}{
		{"duplicate top-level key", "a:\n  n: 1\na:\n  s: x\n", `f.yaml:3:1: a: duplicate key "a" (first at line 1)`},
		{"duplicate nested key", "a:\n  n: 1\n  n: 2\n", `f.yaml:3:3: a.n: duplicate key "n" (first at line 2)`},
		{"duplicate in a list item", "l:\n  - n: 1\n    n: 2\n", `f.yaml:3:5: l[0].n: duplicate key "n" (first at line 2)`},
		{"alias of a mapping", "a: &x\n  n: 1\nb: *x\n", `f.yaml:3:4: b: YAML alias *x is not allowed here: write the value out`},
		{"alias of a scalar", "a:\n  n: &v 1\nb:\n  n: *v\n", `f.yaml:4:6: b.n: YAML alias *v is not allowed here: write the value out`},
		{"merge key", "a: &x\n  n: 1\nb:\n  <<: *x\n  s: y\n", `f.yaml:4:3: b.<<: YAML aliases and merge keys (<<) are not allowed here: write the values out`},
		{"both, all reported", "a:\n  n: &q 1\n  n: 2\nb: *q\n", "f.yaml:3:3: a.n: duplicate key \"n\" (first at line 2)\nf.yaml:4:4: b: YAML alias *q is not allowed here: write the value out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d doc
			_, err := Decode("f.yaml", []byte(tc.in), &d)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got\n%v\nwant\n%s", err, tc.want)
			}
		})
	}
}
