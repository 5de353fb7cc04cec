package cron

import (
	"sync/atomic"

	"github.com/dynapm/dynapm/appfile"
)

// appEntries holds one app's entries and its last job result. It is
// guarded by Scheduler.mu, and every method of appEntries is called with it
// held.
type appEntries struct {
	wakes []*entry
	jobs  []*entry
	last  *JobResult
	// running[i] is set while job i of the app runs (entry.claim). It
	// belongs to the job's place in the app, not to its entry, so that a
	// run begun under an old schedule string still holds off the first
	// fire of the entry that replaced it. It only grows: a job that comes
	// back at an index sees a run still going there.
	running []*atomic.Bool
}

// runningFlag returns the flag of job i, made on first use.
func (a *appEntries) runningFlag(i int) *atomic.Bool {
	for len(a.running) <= i {
		a.running = append(a.running, new(atomic.Bool))
	}
	return a.running[i]
}

// Apply makes the scheduled entries match specs. An entry whose schedule
// string is unchanged keeps its place in the schedule (it neither fires
// again nor loses its next fire), even if its keep, command or position
// changed: it runs the new definition from its next fire on. New schedules
// are added, gone ones removed; apps missing from specs lose all their
// entries (a job of theirs that is running finishes). A job run that goes
// on across a reload holds off the job's next fire, whether its entry was
// kept, moved or replaced by one with a new schedule. A schedule that does
// not parse is logged and skipped (the appfile parser rejects those first).
func (s *Scheduler) Apply(specs []*appfile.Spec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	seen := make(map[string]bool, len(specs))
	for _, spec := range specs {
		seen[spec.Name] = true
		a := s.apps[spec.Name]
		if a == nil {
			a = &appEntries{}
			s.apps[spec.Name] = a
		}
		wakes := make([]string, len(spec.Wake))
		for i, w := range spec.Wake {
			wakes[i] = w.Cron
		}
		jobs := make([]string, len(spec.Jobs))
		for i, j := range spec.Jobs {
			jobs[i] = j.Cron
		}
		a.wakes = s.reconcileLocked(spec, kindWake, a, a.wakes, wakes)
		a.jobs = s.reconcileLocked(spec, kindJob, a, a.jobs, jobs)
	}
	for name, a := range s.apps {
		if seen[name] {
			continue
		}
		for _, e := range a.wakes {
			s.cron.Remove(e.id)
		}
		for _, e := range a.jobs {
			s.cron.Remove(e.id)
		}
		delete(s.apps, name)
	}
}

// reconcileLocked returns the entries for crons (the schedule strings of
// spec.Wake or spec.Jobs, in order), reusing old entries with the same
// schedule string and removing the old entries left over. A job's entry runs
// with a's running flag for its index.
func (s *Scheduler) reconcileLocked(spec *appfile.Spec, k kind, a *appEntries, old []*entry, crons []string) []*entry {
	pool := make(map[string][]*entry, len(old))
	for _, e := range old {
		pool[e.cron] = append(pool[e.cron], e)
	}
	out := make([]*entry, 0, len(crons))
	for i, c := range crons {
		def := &entryDef{spec: spec, index: i}
		if k == kindJob {
			def.running = a.runningFlag(i)
		}
		if es := pool[c]; len(es) > 0 {
			e := es[0]
			pool[c] = es[1:]
			e.def.Store(def)
			out = append(out, e)
			continue
		}
		sched, err := parseSchedule(c, s.cfg.Location)
		if err != nil {
			s.log.Error("skipping scheduled entry", "app", spec.Name, k.String(), i, "err", err)
			continue
		}
		e := &entry{s: s, app: spec.Name, kind: k, cron: c, sched: &recordingSchedule{inner: sched}}
		e.def.Store(def)
		e.id = s.cron.Schedule(e.sched, e)
		out = append(out, e)
	}
	for _, es := range pool {
		for _, e := range es {
			s.cron.Remove(e.id)
		}
	}
	return out
}
