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
