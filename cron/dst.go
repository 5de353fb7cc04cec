package cron

import (
	"time"

	rcron "github.com/robfig/cron/v3"
)

// allHours has the bit of every hour of the day set.
const allHours = 1<<24 - 1

// dstSafe fixes how robfig/cron treats a schedule that names its hours
// ("30 2 * * *") when the clocks change, and does what Vixie cron does:
//
//   - clocks go back: 02:30 happens twice and robfig/cron fires at both; here
//     only the first runs.
//   - clocks go forward: 02:30 does not exist and robfig/cron skips the day;
//     here the entry fires once at the jump (03:00 summer time).
//
// A schedule with every hour ("30 * * * *") is left alone: it fires each
// elapsed hour, which is right both ways.
type dstSafe struct {
	*rcron.SpecSchedule
}

// Real zones shift their clocks by at most two hours, in steps of at least
// 15 minutes.
const (
	shiftStep = 15 * time.Minute
	maxShift  = 2 * time.Hour
)

// Next returns the schedule's next time after t, skipping repeated wall
// times and firing at a forward jump over a matching wall time.
func (d dstSafe) Next(t time.Time) time.Time {
	loc := d.Location
	if loc == time.Local {
		loc = t.Location() // as robfig/cron does
	}
	n := d.SpecSchedule.Next(t)
	// The loop skips at most the matches within one repeated stretch of
	// wall time (two hours of minutes), and ends on a zero (no match) time.
	for !n.IsZero() && isRepeat(n.In(loc)) {
		n = d.SpecSchedule.Next(n)
	}
	if jump := d.jumpOver(t, n, loc); !jump.IsZero() {
		return jump.In(t.Location())
	}
	return n
}

// isRepeat tells whether wall time n already happened earlier the same day
// (the clocks went back in between).
func isRepeat(n time.Time) bool {
	y, mo, d := n.Date()
	h, mi, s := n.Clock()
	for back := shiftStep; back <= maxShift; back += shiftStep {
		e := n.Add(-back)
		ey, emo, ed := e.Date()
		eh, emi, es := e.Clock()
		if ey == y && emo == mo && ed == d && eh == h && emi == mi && es == s {
			return true
		}
	}
	return false
}

// jumpOver returns the first forward clock change in (t, n) (n zero: in
// the next year) that skipped a wall time the schedule matches, or the zero
// time when there is none.
func (d dstSafe) jumpOver(t, n time.Time, loc *time.Location) time.Time {
	limit := n
	if limit.IsZero() {
		limit = t.AddDate(1, 0, 0)
	}
	for at := t.In(loc); ; {
		_, end := at.ZoneBounds()
		if end.IsZero() || !end.Before(limit) {
			return time.Time{}
		}
		_, before := end.Add(-time.Nanosecond).Zone()
		_, after := end.Zone()
		if shift := time.Duration(after-before) * time.Second; shift > 0 && shift <= maxShift && end.After(t) {
			// The wall times from the old clock at the change up to the new
			// one never happened; read them as naive (UTC) times.
			from := wallAsUTC(end.Add(-time.Nanosecond)).Truncate(time.Minute).Add(time.Minute)
			for m := from; m.Before(wallAsUTC(end).Add(time.Nanosecond)) && m.Before(from.Add(shift)); m = m.Add(time.Minute) {
				if d.matches(m) {
					return end
				}
			}
		}
		at = end
	}
}

// wallAsUTC returns t's wall clock reading as a UTC time.
func wallAsUTC(t time.Time) time.Time {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	return time.Date(y, mo, d, h, mi, s, t.Nanosecond(), time.UTC)
}

// matches tells whether the schedule names wall time w (second 0 of a
// minute, read from w's fields), with cron's day rule: when both day of
// month and day of week are restricted, either may match.
func (d dstSafe) matches(w time.Time) bool {
	s := d.SpecSchedule
	bit := func(field uint64, v int) bool { return field&(1<<uint(v)) != 0 }
	if !bit(s.Month, int(w.Month())) || !bit(s.Hour, w.Hour()) || !bit(s.Minute, w.Minute()) || !bit(s.Second, 0) {
		return false
	}
	const starBit = 1 << 63
	dom, dow := bit(s.Dom, w.Day()), bit(s.Dow, int(w.Weekday()))
	if s.Dom&starBit != 0 || s.Dow&starBit != 0 {
		return dom && dow
	}
	return dom || dow
}
