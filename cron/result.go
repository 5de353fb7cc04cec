package cron

import (
	"time"
)

// JobResult is the outcome of one run of a scheduled job.
type JobResult struct {
	// Time is when the run began.
	Time time.Time
	// Job is the job's index in the app's jobs, Command its argv.
	Job     int
	Command []string
	// ExitCode is the command's exit status, or -1 when it did not exit on
	// its own (killed by a signal, never started).
	ExitCode int
	// Duration is how long the run took, waking the app included.
	Duration time.Duration
	// Err is nil when the command exited 0; otherwise it says why not.
	Err error
}

// NextWake returns the next time a scheduled entry (a wake, or a job with
// needs_app) will start app, or the zero time when none will.
func (s *Scheduler) NextWake(app string) time.Time {
	s.mu.Lock()
	a := s.apps[app]
	if a == nil || s.closed {
		s.mu.Unlock()
		return time.Time{}
	}
	es := append(append([]*entry(nil), a.wakes...), a.jobs...)
	s.mu.Unlock()
	now := time.Now()
	var best time.Time
	for _, e := range es {
		if !e.startsApp() {
			continue
		}
		if n := e.sched.next(now); !n.IsZero() && (best.IsZero() || n.Before(best)) {
			best = n
		}
	}
	return best
}

// LastJob returns the result of the app's most recently finished job run,
// and false when none of its jobs has finished since it was applied.
func (s *Scheduler) LastJob(app string) (JobResult, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[app]
	if a == nil || a.last == nil {
		return JobResult{}, false
	}
	return *a.last, true
}

// record keeps res as app's last job result, unless the app is gone.
func (s *Scheduler) record(app string, res JobResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.apps[app]; a != nil {
		a.last = &res
	}
}
