package policy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/herd-project/herd/policy/yamlfile"
)

// utc parses "2006-01-02 15:04" in UTC.
func utc(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestWindowAt asks each window, at each instant, whether it is open and
// which opening is under way or comes next; all instants in UTC.
// 2026-03-02 is a Monday; Europe/Berlin goes to summer time on
// 2026-03-29 (02:00 CET → 03:00 CEST) and back on 2026-10-25; New York on
// 2026-03-08 and 2026-11-01.
func TestWindowAt(t *testing.T) {
	nightly := Window{Name: "nightly", Start: "02:00", Duration: 4 * time.Hour}
	weekend := Window{Name: "weekend", Days: []string{"sat"}, Start: "22:00", Duration: 6 * time.Hour}
	berlin := Window{Name: "b", Start: "02:30", Duration: time.Hour, TimeZone: "Europe/Berlin"}
	berlinMidnight := Window{Name: "bm", Days: []string{"sunday"}, Start: "00:00", Duration: 4 * time.Hour, TimeZone: "Europe/Berlin"}
	ny := Window{Name: "ny", Days: []string{"Sun", "wed"}, Start: "01:00", Duration: 2 * time.Hour, TimeZone: "America/New_York"}
	long := Window{Name: "long", Days: []string{"mon", "tue"}, Start: "00:00", Duration: 48 * time.Hour}
	for _, tc := range []struct {
		name          string
		w             Window
		at            string
		open          bool
		opens, closes string
	}{
		{"before the opening", nightly, "2026-03-02 01:59", false, "2026-03-02 02:00", "2026-03-02 06:00"},
		{"at the opening", nightly, "2026-03-02 02:00", true, "2026-03-02 02:00", "2026-03-02 06:00"},
		{"inside", nightly, "2026-03-02 05:59", true, "2026-03-02 02:00", "2026-03-02 06:00"},
		{"at the close: closed, next is tomorrow", nightly, "2026-03-02 06:00", false, "2026-03-03 02:00", "2026-03-03 06:00"},
		{"across midnight, after it", weekend, "2026-03-08 03:00", true, "2026-03-07 22:00", "2026-03-08 04:00"},
		{"weekly, on a Monday", weekend, "2026-03-09 12:00", false, "2026-03-14 22:00", "2026-03-15 04:00"},
		{"weekly, the Saturday before it opens", weekend, "2026-03-14 21:59", false, "2026-03-14 22:00", "2026-03-15 04:00"},
		{"zone: 02:30 CET is 01:30 UTC", berlin, "2026-03-28 01:30", true, "2026-03-28 01:30", "2026-03-28 02:30"},
		{"zone: 01:29 UTC is before it", berlin, "2026-03-28 01:29", false, "2026-03-28 01:30", "2026-03-28 02:30"},
		{"spring forward: 02:30 does not exist, opens at 03:30 CEST", berlin, "2026-03-29 00:30", false, "2026-03-29 01:30", "2026-03-29 02:30"},
		{"summer time: 02:30 CEST is 00:30 UTC", berlin, "2026-03-30 00:00", false, "2026-03-30 00:30", "2026-03-30 01:30"},
		{"summer time: open at 00:45 UTC", berlin, "2026-03-30 00:45", true, "2026-03-30 00:30", "2026-03-30 01:30"},
		{"fall back: 02:30 happens twice, the second (CET) counts", berlin, "2026-10-25 00:45", false, "2026-10-25 01:30", "2026-10-25 02:30"},
		{"winter time again", berlin, "2026-10-26 01:45", true, "2026-10-26 01:30", "2026-10-26 02:30"},
		{"duration is elapsed time across the change", berlinMidnight, "2026-03-29 02:30", true, "2026-03-28 23:00", "2026-03-29 03:00"},
		{"... and it is closed one real hour after 04:00 CEST", berlinMidnight, "2026-03-29 03:00", false, "2026-04-04 22:00", "2026-04-05 02:00"},
		{"New York before DST: 01:00 EST is 06:00 UTC", ny, "2026-03-04 05:00", false, "2026-03-04 06:00", "2026-03-04 08:00"},
		{"New York on the change day: 01:00 EST still", ny, "2026-03-08 06:30", true, "2026-03-08 06:00", "2026-03-08 08:00"},
		{"New York after DST: 01:00 EDT is 05:00 UTC", ny, "2026-03-11 04:00", false, "2026-03-11 05:00", "2026-03-11 07:00"},
		{"overlapping openings count as one", long, "2026-03-03 12:00", true, "2026-03-02 00:00", "2026-03-05 00:00"},
		{"after the merged opening", long, "2026-03-05 00:00", false, "2026-03-09 00:00", "2026-03-12 00:00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tc.w.Schedule()
			if err != nil {
				t.Fatal(err)
			}
			at := utc(t, tc.at)
			open, sp := s.At(at)
			if open != tc.open || !sp.Opens.Equal(utc(t, tc.opens)) || !sp.Closes.Equal(utc(t, tc.closes)) {
				t.Errorf("At(%s) = %v [%s, %s), want %v [%s, %s)", tc.at, open,
					sp.Opens.UTC().Format("2006-01-02 15:04"), sp.Closes.UTC().Format("2006-01-02 15:04"), tc.open, tc.opens, tc.closes)
			}
			if s.Open(at) != tc.open {
				t.Errorf("Open disagrees with At")
			}
			wantNext := utc(t, tc.opens)
			if tc.open {
				wantNext = at
			}
			if got := s.NextOpen(at); !got.Equal(wantNext) {
				t.Errorf("NextOpen = %s, want %s", got.UTC(), wantNext)
			}
			if got := s.NextClose(at); !got.Equal(utc(t, tc.closes)) {
				t.Errorf("NextClose = %s, want %s", got.UTC(), tc.closes)
			}
		})
	}
}

// TestWindowAtWalk walks a year minute by hour: the answer is always
// consistent (an open window's span holds t, a closed one's starts after t
// and no later than a week on) for windows in several zones.
func TestWindowAtWalk(t *testing.T) {
	for _, w := range []Window{
		{Name: "a", Start: "02:30", Duration: 90 * time.Minute, TimeZone: "Europe/Berlin"},
		{Name: "b", Days: []string{"fri", "sat"}, Start: "23:45", Duration: 30 * time.Hour, TimeZone: "America/New_York"},
		{Name: "c", Days: []string{"sun"}, Start: "00:00", Duration: 167 * time.Hour, TimeZone: "Australia/Lord_Howe"},
	} {
		s, err := w.Schedule()
		if err != nil {
			t.Fatal(err)
		}
		start := utc(t, "2026-01-01 00:00")
		for at := start; at.Before(start.AddDate(1, 0, 0)); at = at.Add(61 * time.Minute) {
			open, sp := s.At(at)
			if !sp.Opens.Before(sp.Closes) {
				t.Fatalf("%s at %s: empty span %v", w.Name, at, sp)
			}
			if open && (at.Before(sp.Opens) || !at.Before(sp.Closes)) {
				t.Fatalf("%s at %s: open but span %v does not hold it", w.Name, at, sp)
			}
			if !open && (!sp.Opens.After(at) || sp.Opens.After(at.Add(8*24*time.Hour))) {
				t.Fatalf("%s at %s: closed but next opening %v", w.Name, at, sp)
			}
		}
	}
}

// TestWindowErrors parses policies with bad windows: each problem is
// reported naming windows[i].field, and a balancing window must exist.
func TestWindowErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want []string
	}{
		{"bad start", "windows:\n  - {name: a, start: \"02:00\", duration: 1h}\n  - {name: b, start: \"25:00\", duration: 1h}\n",
			[]string{`windows[1].start: "25:00" is not a time of day: use HH:MM on a 24-hour clock`}},
		{"missing start and duration", "windows:\n  - {name: a}\n",
			[]string{`windows[0].start: missing`, `windows[0].duration: missing`}},
		{"bad day", "windows:\n  - {name: a, days: [mon, funday], start: \"02:00\", duration: 1h}\n",
			[]string{`windows[0].days[1]: "funday" is not a day`}},
		{"day twice", "windows:\n  - {name: a, days: [mon, Monday], start: \"02:00\", duration: 1h}\n",
			[]string{`windows[0].days[1]: "Monday" is listed twice`}},
		{"unknown zone", "windows:\n  - {name: a, start: \"02:00\", duration: 1h, time_zone: Europe/Berln}\n",
			[]string{`windows[0].time_zone: unknown time zone "Europe/Berln"`}},
		{"duration too long", "windows:\n  - {name: a, days: [sun], start: \"02:00\", duration: 169h}\n",
			[]string{`windows[0].duration: must be at least 1m and at most 168h (a week), got 169h0m0s`}},
		{"never closes", "windows:\n  - {name: a, start: \"02:00\", duration: 24h}\n",
			[]string{`windows[0].duration: 24h0m0s on these days never lets the window close`}},
		{"duplicate name", "windows:\n  - {name: a, start: \"02:00\", duration: 1h}\n  - {name: a, start: \"03:00\", duration: 1h}\n",
			[]string{`windows[1].name: name "a" is already used by windows[0]`}},
		{"balancing names an unknown window", "windows:\n  - {name: nightly, start: \"02:00\", duration: 1h}\nbalancing:\n  window: nighlty\n",
			[]string{`balancing.window: unknown window "nighlty" (did you mean "nightly"?)`}},
		{"balancing window without windows", "balancing:\n  window: nightly\n",
			[]string{`balancing.window: unknown window "nightly": windows defines none`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(header+tc.yaml))
			var errs yamlfile.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("want field errors, got %v", err)
			}
			if len(errs) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %d = %q, want it to hold %q", i, errs[i].Error(), w)
				}
			}
		})
	}
}

// TestWindowParse: a good window survives the canonical round trip and is
// found by name; an unknown name lists the known ones.
func TestWindowParse(t *testing.T) {
	d, err := Parse("p.yaml", []byte(header+"windows:\n  - name: nightly\n    days: [mon, tue]\n    start: \"02:00\"\n    duration: 4h\n    time_zone: Europe/Berlin\nbalancing:\n  mode: automatic\n  window: nightly\n"))
	if err != nil {
		t.Fatal(err)
	}
	again, y := reparse(t, d)
	if again.Hash() != d.Hash() || again.Windows[0].Duration != 4*time.Hour || again.Balancing.Window != "nightly" {
		t.Errorf("round trip changed the windows:\n%s", y)
	}
	s, err := d.Window("nightly")
	if err != nil || s.Name != "nightly" {
		t.Fatalf("Window(nightly) = %v, %v", s, err)
	}
	if _, err := d.Window("weekend"); err == nil || !strings.Contains(err.Error(), `unknown window "weekend" (known: nightly)`) {
		t.Errorf("Window(weekend) error = %v", err)
	}
}

// TestWindowWait: work held to a window waits while it is closed, saying
// until when; not while it is open, nor without a window.
func TestWindowWait(t *testing.T) {
	d := &Document{Windows: []Window{{Name: "nightly", Start: "02:00", Duration: time.Hour}}}
	for _, tc := range []struct {
		name, window, at, want string
		opens                  string
	}{
		{"no window", "", "2026-03-02 12:00", "", ""},
		{"open", "nightly", "2026-03-02 02:30", "", ""},
		{"closed", "nightly", "2026-03-02 12:00", "window nightly is closed: it opens at 2026-03-03T02:00:00Z (in 14h0m0s)", "2026-03-03 02:00"},
	} {
		msg, opens, err := d.WindowWait(tc.window, utc(t, tc.at))
		if err != nil || msg != tc.want || (tc.opens != "" && !opens.Equal(utc(t, tc.opens))) {
			t.Errorf("%s: %q, %v, %v", tc.name, msg, opens, err)
		}
	}
	if _, _, err := d.WindowWait("weekend", time.Now()); err == nil {
		t.Error("an unknown window is no error")
	}
}
