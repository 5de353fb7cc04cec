package cron

import (
	"runtime/debug"
	"sync/atomic"

	"github.com/dynapm/dynapm/appfile"
	rcron "github.com/robfig/cron/v3"
)

// kind tells a wake entry from a job entry.
type kind int

const (
	kindWake kind = iota
	kindJob
)

// entry is one scheduled wake or job of one app. It keeps its robfig/cron
// entry (and so its place in the schedule) across reloads that leave its
// schedule string alone; the definition it runs is swapped in place.
type entry struct {
	s     *Scheduler
	app   string
	kind  kind
	cron  string
	sched *recordingSchedule
	id    rcron.EntryID

	def atomic.Pointer[entryDef]
	// running is set while the entry's job runs (see claim).
	running atomic.Bool
}

// entryDef is what an entry runs: entry index of spec.Wake or spec.Jobs
// (by the entry's kind).
type entryDef struct {
	spec  *appfile.Spec
	index int
	// running is the app's flag for job index (appEntries.running); nil
	// for a wake.
	running *atomic.Bool
}

// Run is called by robfig/cron, in a goroutine of its own, at each fire.
func (e *entry) Run() {
	def := e.def.Load()
	if e.kind == kindJob {
		release, ok := e.claim(def)
		if !ok {
			e.s.log.Warn("job still running, skipping this run", "app", e.app, "job", def.index, "cron", e.cron)
			return
		}
		defer release()
	}
	defer func() {
		if r := recover(); r != nil {
			e.s.logPanic(e.app, e.kind, def.index, e.cron, r)
		}
	}()
	if e.s.stopping.Err() != nil {
		return
	}
	switch e.kind {
	case kindWake:
		e.s.runWake(def.spec, def.index)
	case kindJob:
		e.s.runJob(def.spec, def.index)
	}
}

// claim marks e's job as running, both on the entry and on the job's index
// in the app, and returns the release; ok is false when either mark is
// taken: a run of the job is still going. Across a reload, a job whose
// schedule string changed gets a new entry at the same index, and a job
// moved to another index keeps its entry; either way a run begun before
// holds off the next.
func (e *entry) claim(def *entryDef) (release func(), ok bool) {
	if !e.running.CompareAndSwap(false, true) {
		return nil, false
	}
	if !def.running.CompareAndSwap(false, true) {
		e.running.Store(false)
		return nil, false
	}
	return func() {
		def.running.Store(false)
		e.running.Store(false)
	}, true
}

// logPanic logs a panic recovered in entry index of app's kind with the
// stack. Call it from the deferred function that recovered.
func (s *Scheduler) logPanic(app string, k kind, index int, cron string, r any) {
	s.log.Error("panic in scheduled entry", "app", app, k.String(), index, "cron", cron,
		"panic", r, "stack", string(debug.Stack()))
}

// String is the kind's name, also the log attribute holding an entry's
// index ("wake=0", "job=2").
func (k kind) String() string {
	if k == kindWake {
		return "wake"
	}
	return "job"
}

// startsApp tells whether a fire of e starts the app.
func (e *entry) startsApp() bool {
	if e.kind == kindWake {
		return true
	}
	d := e.def.Load()
	return d.spec.Jobs[d.index].NeedsApp
}
