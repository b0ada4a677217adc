package placement

import (
	"errors"
	"testing"

	"github.com/herd-project/herd/policy"
	"github.com/herd-project/herd/policy/policytest"
)

func TestLimitsValidate(t *testing.T) {
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if d := DefaultLimits(); d != (Limits{PerSource: 2, PerTarget: 2, Cluster: 8}) {
		t.Errorf("defaults = %+v", d)
	}
	for _, tc := range []struct {
		l     Limits
		field string
	}{
		{Limits{0, 2, 8}, "per_source"},
		{Limits{2, -1, 8}, "per_target"},
		{Limits{2, 2, 0}, "cluster"},
	} {
		err := tc.l.Validate()
		var fe *policy.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("Validate(%+v) = %v, want an error on %s", tc.l, err, tc.field)
		}
	}
}

func TestLimitsAllow(t *testing.T) {
	lim := Limits{PerSource: 2, PerTarget: 1, Cluster: 3}
	l := NewLedger()
	steps := []struct {
		from, to string
		want     bool
	}{
		{"a", "x", true},
		{"a", "x", false}, // x has its one incoming move
		{"a", "y", true},
		{"a", "z", false}, // a has two outgoing moves
		{"b", "z", true},
		{"c", "w", false}, // three in the cluster
	}
	for i, st := range steps {
		got := lim.Allow(l, st.from, st.to)
		if got != st.want {
			t.Fatalf("step %d: Allow(%s→%s) = %v, want %v", i, st.from, st.to, got, st.want)
		}
		if got {
			l.Reserve(string(rune('0'+i)), st.from, st.to, policytest.GiB)
		}
	}
	l.Release("0")
	if !lim.Allow(l, "c", "x") {
		t.Error("a released slot is not allowed again")
	}
}
