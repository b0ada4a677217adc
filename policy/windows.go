package policy

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	// Zone data inside the binary: a window's time zone resolves on a
	// host without /usr/share/zoneinfo (a minimal container) too.
	_ "time/tzdata"
)

// Window is a recurring maintenance window: it opens at Start (wall-clock
// time in TimeZone) on each of Days and stays open for Duration. A
// rollout or automatic balancing that names it starts work only while it is
// open.
//
// Duration is elapsed time: a four-hour window that spans a change to or
// from daylight saving time is open four real hours. A Start that falls in
// the hour skipped when clocks go forward opens the window that much later
// (02:30 becomes 03:30); a Start in the hour that repeats when clocks go
// back opens it at the second of the two (as time.Date resolves them).
type Window struct {
	Name string `yaml:"name" json:"name"`
	// Days the window opens on: mon, tue, wed, thu, fri, sat, sun (the
	// full English names work too); none means every day.
	Days []string `yaml:"days,omitempty" json:"days,omitempty"`
	// Start is the local time the window opens, HH:MM (24-hour clock).
	Start string `yaml:"start" json:"start"`
	// Duration the window stays open: at least one minute, at most a
	// week.
	Duration time.Duration `yaml:"duration" json:"duration"`
	// TimeZone is an IANA zone name such as Europe/Berlin; empty is UTC.
	TimeZone string `yaml:"time_zone,omitempty" json:"time_zone,omitempty"`
}

// Limits of a window's duration.
const (
	MinWindowDuration = time.Minute
	MaxWindowDuration = 7 * 24 * time.Hour
)

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

var startRE = regexp.MustCompile(`^([01]?[0-9]|2[0-3]):([0-5][0-9])$`)

// Schedule is a validated window, ready to answer when it is open.
type Schedule struct {
	Name     string
	days     [7]bool
	hour     int
	minute   int
	duration time.Duration
	loc      *time.Location
}

// Schedule checks w and returns its schedule; the error is the first
// problem found, naming its field relative to the window (days[1], start,
// duration, time_zone).
func (w Window) Schedule() (*Schedule, error) {
	s, errs := w.schedule()
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return s, nil
}

// schedule builds the schedule and lists every problem of w.
func (w Window) schedule() (*Schedule, []*FieldError) {
	var errs []*FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	s := &Schedule{Name: w.Name, duration: w.Duration, loc: time.UTC}
	if len(w.Days) == 0 {
		s.days = [7]bool{true, true, true, true, true, true, true}
	}
	for i, d := range w.Days {
		wd, ok := weekdays[strings.ToLower(strings.TrimSpace(d))]
		switch {
		case !ok:
			bad(fmt.Sprintf("days[%d]", i), "%q is not a day: use mon, tue, wed, thu, fri, sat or sun", d)
		case s.days[wd]:
			bad(fmt.Sprintf("days[%d]", i), "%q is listed twice", d)
		default:
			s.days[wd] = true
		}
	}
	if m := startRE.FindStringSubmatch(strings.TrimSpace(w.Start)); m != nil {
		s.hour, _ = strconv.Atoi(m[1])
		s.minute, _ = strconv.Atoi(m[2])
	} else if w.Start == "" {
		bad("start", "missing; the local time the window opens, HH:MM, such as 02:00")
	} else {
		bad("start", "%q is not a time of day: use HH:MM on a 24-hour clock, such as 02:00 or 22:30", w.Start)
	}
	switch {
	case w.Duration == 0:
		bad("duration", "missing; how long the window stays open, such as 4h")
	case w.Duration < MinWindowDuration || w.Duration > MaxWindowDuration:
		bad("duration", "must be at least 1m and at most 168h (a week), got %s", w.Duration)
	case len(errs) == 0 && s.alwaysOpen():
		bad("duration", "%s on these days never lets the window close: it would not be a window", w.Duration)
	}
	if w.TimeZone != "" {
		loc, err := time.LoadLocation(w.TimeZone)
		if err != nil || strings.EqualFold(w.TimeZone, "local") {
			bad("time_zone", "unknown time zone %q: use an IANA name such as Europe/Berlin, America/New_York or UTC", w.TimeZone)
		} else {
			s.loc = loc
		}
	}
	return s, errs
}

// alwaysOpen reports whether each opening reaches the next one, on the
// nominal week.
func (s *Schedule) alwaysOpen() bool {
	var starts []time.Duration
	for d := 0; d < 7; d++ {
		if s.days[d] {
			starts = append(starts, time.Duration(d)*24*time.Hour)
		}
	}
	for i, st := range starts {
		next := starts[0] + 7*24*time.Hour
		if i+1 < len(starts) {
			next = starts[i+1]
		}
		if st+s.duration < next {
			return false
		}
	}
	return true
}

// Span is one opening of a window: open from Opens until Closes.
type Span struct {
	Opens  time.Time `json:"opens"`
	Closes time.Time `json:"closes"`
}

// At says whether the window is open at t. If it is, span is the opening
// under way (Opens at or before t, Closes after t); if not, span is the
// next opening after t. Openings that overlap or touch count as one.
func (s *Schedule) At(t time.Time) (open bool, span Span) {
	spans := s.spans(t)
	for _, sp := range spans {
		if !t.Before(sp.Opens) && t.Before(sp.Closes) {
			return true, sp
		}
		if sp.Opens.After(t) {
			return false, sp
		}
	}
	// Unreachable for a validated window: one opens every week.
	return false, Span{}
}

// Open reports whether the window is open at t.
func (s *Schedule) Open(t time.Time) bool {
	open, _ := s.At(t)
	return open
}

// NextOpen is when the window next opens at or after t: t itself if it is
// open then.
func (s *Schedule) NextOpen(t time.Time) time.Time {
	open, sp := s.At(t)
	if open {
		return t
	}
	return sp.Opens
}

// NextClose is when the window next closes after t: the end of the opening
// under way, or of the next one if it is closed at t.
func (s *Schedule) NextClose(t time.Time) time.Time {
	_, sp := s.At(t)
	return sp.Closes
}

// spans lists the merged openings from two weeks before t (the longest
// opening, a week, has begun by then) to two weeks after (one has begun
// after t by then).
func (s *Schedule) spans(t time.Time) []Span {
	local := t.In(s.loc)
	y, m, d := local.Date()
	var out []Span
	for i := -15; i <= 15; i++ {
		day := time.Date(y, m, d+i, 12, 0, 0, 0, s.loc) // noon: never in a gap
		if !s.days[day.Weekday()] {
			continue
		}
		opens := time.Date(day.Year(), day.Month(), day.Day(), s.hour, s.minute, 0, 0, s.loc)
		sp := Span{Opens: opens, Closes: opens.Add(s.duration)}
		if n := len(out); n > 0 && !sp.Opens.After(out[n-1].Closes) {
			if sp.Closes.After(out[n-1].Closes) {
				out[n-1].Closes = sp.Closes
			}
			continue
		}
		out = append(out, sp)
	}
	return out
}

// Window returns the schedule of the named window, or an error naming the
// windows the policy defines.
func (d *Document) Window(name string) (*Schedule, error) {
	for _, w := range d.Windows {
		if w.Name == name {
			return w.Schedule()
		}
	}
	var names []string
	for _, w := range d.Windows {
		names = append(names, w.Name)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("unknown window %q: the policy defines no windows", name)
	}
	return nil, fmt.Errorf("unknown window %q%s", name, didYouMeanOr(name, names))
}

// WindowWait says whether work held to the window name may start at now:
// "" when it may (name empty, or the window open), else why it waits, such
// as "window nightly is closed: it opens at 2026-03-03T01:00:00Z (in
// 5h12m0s)", and when the window opens. An unknown window is an error.
func (d *Document) WindowWait(name string, now time.Time) (string, time.Time, error) {
	if name == "" {
		return "", time.Time{}, nil
	}
	s, err := d.Window(name)
	if err != nil {
		return "", time.Time{}, err
	}
	open, sp := s.At(now)
	if open {
		return "", time.Time{}, nil
	}
	return fmt.Sprintf("window %s is closed: it opens at %s (in %s)", name, sp.Opens.UTC().Format(time.RFC3339), sp.Opens.Sub(now).Round(time.Second)), sp.Opens, nil
}

// didYouMeanOr is a hint at a close name, or the list of known ones.
func didYouMeanOr(name string, names []string) string {
	if hint := didYouMean(name, names); hint != "" {
		return hint
	}
	return " (known: " + strings.Join(names, ", ") + ")"
}

// windows checks the windows: names, and each window's fields.
func (c *checker) windows(ws []Window) map[string]int {
	for i, w := range ws {
		_, errs := w.schedule()
		for _, fe := range errs {
			c.add(fmt.Sprintf("windows[%d].%s", i, fe.Field), "%s", fe.Msg)
		}
	}
	return c.names("windows", len(ws), func(i int) string { return ws[i].Name })
}
