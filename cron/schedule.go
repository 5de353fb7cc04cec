package cron

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	rcron "github.com/robfig/cron/v3"
)

// parseSchedule reads a schedule the way the appfile parser validated it:
// five fields or a descriptor, optionally prefixed by CRON_TZ=Zone. A
// schedule without a zone prefix runs in loc.
func parseSchedule(spec string, loc *time.Location) (sched rcron.Schedule, err error) {
	// robfig/cron v3.0.1 slices out of range on "CRON_TZ=X" with nothing
	// after it; the appfile parser rejects that, but a scheduler must not
	// take the daemon down over one string.
	defer func() {
		if r := recover(); r != nil {
			sched, err = nil, fmt.Errorf("parsing schedule %q: malformed time zone prefix", spec)
		}
	}()
	sched, err = rcron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("parsing schedule %q: %w", spec, err)
	}
	// The parser puts time.Local into schedules without a zone prefix.
	if ss, ok := sched.(*rcron.SpecSchedule); ok && !hasZonePrefix(spec) {
		c := *ss
		c.Location = loc
		ss = &c
		sched = ss
	}
	if ss, ok := sched.(*rcron.SpecSchedule); ok && ss.Hour&allHours != allHours {
		sched = onceADay{ss}
	}
	return sched, nil
}

// allHours has the bit of every hour of the day set.
const allHours = 1<<24 - 1

// onceADay fixes robfig/cron firing a fixed-hour schedule twice when the
// clocks go back: with "30 2 * * *" in Europe/Berlin, 02:30 happens twice
// on the last Sunday of October and robfig/cron runs the job at both. Like
// Vixie cron, a schedule that names its hours runs at the first occurrence
// of a repeated wall time only; one with every hour ("30 * * * *") keeps
// firing each elapsed hour.
type onceADay struct {
	*rcron.SpecSchedule
}

// maxShift bounds the clock changes looked for: real zones shift by at most
// two hours, in steps of at least 15 minutes.
const (
	shiftStep = 15 * time.Minute
	maxShift  = 2 * time.Hour
)

// Next returns the schedule's next time after t that is not the repeat of
// a wall time already passed.
func (o onceADay) Next(t time.Time) time.Time {
	// The loop skips at most the matches within one repeated stretch of
	// wall time (two hours of minutes), and ends on a zero (no match) time.
	for {
		n := o.SpecSchedule.Next(t)
		if n.IsZero() || !isRepeat(n.In(o.Location)) {
			return n
		}
		t = n
	}
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

func hasZonePrefix(spec string) bool {
	spec = strings.TrimSpace(spec)
	return strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=")
}

// recordingSchedule remembers the last fire time robfig/cron computed for
// its entry, so that NextWake can answer without a round trip through the
// cron goroutine (Cron.Entry copies every entry, per call).
type recordingSchedule struct {
	inner rcron.Schedule
	last  atomic.Pointer[time.Time]
}

// Next returns the inner schedule's next time after t and records it.
// robfig/cron calls it exactly when it (re)computes the entry's next run.
func (r *recordingSchedule) Next(t time.Time) time.Time {
	n := r.inner.Next(t)
	r.last.Store(&n)
	return n
}

// next returns the entry's next fire time: the recorded one once the cron
// goroutine computed it, else what the schedule says for now (before Start).
func (r *recordingSchedule) next(now time.Time) time.Time {
	if p := r.last.Load(); p != nil {
		return *p
	}
	return r.inner.Next(now)
}
