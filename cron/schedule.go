package cron

import (
	"fmt"
	"sync/atomic"
	"time"

	rcron "github.com/robfig/cron/v3"

	"github.com/dynapm/dynapm/appfile"
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
	if _, _, zoned := appfile.CutZone(spec); !zoned {
		if ss, ok := sched.(*rcron.SpecSchedule); ok {
			c := *ss
			c.Location = loc
			sched = &c
		}
	}
	if ss, ok := sched.(*rcron.SpecSchedule); ok && ss.Hour&allHours != allHours {
		sched = dstSafe{ss}
	}
	return sched, nil
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
