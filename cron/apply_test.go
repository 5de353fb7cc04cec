package cron

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// entryIDs returns the robfig/cron entry ids of app's entries.
func entryIDs(s *Scheduler, app string) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []int
	if a := s.apps[app]; a != nil {
		for _, e := range append(append([]*entry(nil), a.wakes...), a.jobs...) {
			ids = append(ids, int(e.id))
		}
	}
	return ids
}

func TestApplyUnchangedScheduleKeepsEntryAndNextFire(t *testing.T) {
	w := newRecWaker(t)
	s, _ := newTestScheduler(t, w, nil)
	spec := func(wakeCron string, keep time.Duration, cmd string) *appfile.Spec {
		return &appfile.Spec{
			Name: "steady",
			Wake: []appfile.Wake{{Cron: wakeCron, Keep: keep}},
			Jobs: []appfile.Job{{Cron: "@every 1h", Command: []string{"/bin/sh", "-c", cmd}}},
		}
	}
	s.Apply([]*appfile.Spec{spec("@every 1h", time.Minute, "true")})
	ids := entryIDs(s, "steady")
	// The cron goroutine computes the first fire time once it sees the entry.
	waitFor(t, 10*time.Second, "the first fire time", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.apps["steady"].wakes[0].sched.last.Load() != nil
	})
	next := s.NextWake("steady")
	// @every counts whole seconds from when the entry was added: after the
	// clock's second changed, a re-added entry would fire later.
	sec := time.Now().Truncate(time.Second)
	waitFor(t, 5*time.Second, "the next second", func() bool { return time.Now().Truncate(time.Second).After(sec) })

	// A new Spec with the same schedules but other keep and command.
	s.Apply([]*appfile.Spec{spec("@every 1h", 2*time.Minute, "false")})
	if got := entryIDs(s, "steady"); len(got) != 2 || got[0] != ids[0] || got[1] != ids[1] {
		t.Errorf("entries after an unchanged reload = %v, want the same %v", got, ids)
	}
	if got := s.NextWake("steady"); !got.Equal(next) {
		t.Errorf("NextWake after an unchanged reload = %v, want %v", got, next)
	}
	s.mu.Lock()
	def := s.apps["steady"].jobs[0].def.Load()
	s.mu.Unlock()
	if def.spec.Jobs[0].Command[2] != "false" {
		t.Errorf("the kept job entry runs %q, want the new command", def.spec.Jobs[0].Command)
	}

	// A changed schedule replaces its entry (and only it).
	s.Apply([]*appfile.Spec{spec("@every 2h", time.Minute, "true")})
	got := entryIDs(s, "steady")
	if len(got) != 2 || got[0] == ids[0] || got[1] != ids[1] {
		t.Errorf("entries after a wake schedule change = %v (were %v), want a new wake entry and the same job entry", got, ids)
	}
	if n := len(s.cron.Entries()); n != 2 {
		t.Errorf("robfig/cron holds %d entries, want 2 (old wake entry removed)", n)
	}
	if d := time.Until(s.NextWake("steady")); d < time.Hour {
		t.Errorf("NextWake is in %s, want the new 2h schedule's", d)
	}
}

func TestFrequentReloadsNeitherLoseNorDoubleFires(t *testing.T) {
	w := newRecWaker(t)
	s, _ := newTestScheduler(t, w, nil)
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	// Each Apply hands a fresh *Spec, as a reload of an unchanged file does.
	// Re-adding the entry each time would restart its 1s interval and,
	// reloaded five times a second, it would never fire.
	apply := func() {
		s.Apply([]*appfile.Spec{jobSpec("busy", dir, "@every 1s", `date +%s%N >> runs`)})
	}
	apply()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for len(lines(t, runs)) < 3 {
		select {
		case <-tick.C:
			apply()
		case <-deadline:
			t.Fatalf("job ran %d times in 30s under reloads, want 3", len(lines(t, runs)))
		}
	}
	if n := len(s.cron.Entries()); n != 1 {
		t.Errorf("robfig/cron holds %d entries after many reloads, want 1", n)
	}
}

func TestRemovingAppRemovesItsEntries(t *testing.T) {
	w := newRecWaker(t)
	s, _ := newTestScheduler(t, w, nil)
	dir := t.TempDir()
	gone := jobSpec("gone", dir, "@every 1s", `echo x >> gone.runs`)
	gone.Wake = []appfile.Wake{{Cron: "@every 1h"}}
	stay := jobSpec("stay", dir, "@every 1s", `echo x >> stay.runs`)
	s.Apply([]*appfile.Spec{gone, stay})
	waitFor(t, 20*time.Second, "a run of gone", func() bool { _, ok := s.LastJob("gone"); return ok })

	s.Apply([]*appfile.Spec{stay})
	before := len(lines(t, filepath.Join(dir, "gone.runs")))
	if n := len(s.cron.Entries()); n != 1 {
		t.Errorf("robfig/cron holds %d entries, want only stay's job", n)
	}
	if n := s.NextWake("gone"); !n.IsZero() {
		t.Errorf("NextWake of a removed app = %v, want zero", n)
	}
	if _, ok := s.LastJob("gone"); ok {
		t.Errorf("LastJob of a removed app still reported")
	}
	// Two more fires of stay: gone would have fired meanwhile too.
	stayRuns := len(lines(t, filepath.Join(dir, "stay.runs")))
	waitFor(t, 20*time.Second, "two more runs of stay", func() bool {
		return len(lines(t, filepath.Join(dir, "stay.runs"))) >= stayRuns+2
	})
	// One run of gone may have been under way when it was removed.
	if after := len(lines(t, filepath.Join(dir, "gone.runs"))); after > before+1 {
		t.Errorf("removed app ran %d more times", after-before)
	}
}

func TestApplySkipsAnUnparsableScheduleAndKeepsTheRest(t *testing.T) {
	w := newRecWaker(t)
	s, rec := newTestScheduler(t, w, nil)
	s.Apply([]*appfile.Spec{{Name: "odd", Wake: []appfile.Wake{
		{Cron: "CRON_TZ=UTC"}, // robfig/cron panics on this one
		{Cron: "@every 1h"},
	}}})
	if !rec.has("skipping scheduled entry", "app=odd", "wake=0") {
		t.Errorf("bad schedule not logged")
	}
	if n := len(s.cron.Entries()); n != 1 {
		t.Errorf("robfig/cron holds %d entries, want the good one", n)
	}
	if d := time.Until(s.NextWake("odd")); d < 58*time.Minute || d > time.Hour+time.Second {
		t.Errorf("NextWake is in %s, want the good entry's hour", d)
	}
}

func TestReloadDuringAJobRunDoesNotLetItOverlap(t *testing.T) {
	// The run holds until the test creates the gate file, so that the
	// reloaded job's fires come while it runs, however slow the machine.
	const script = `echo start >> runs; while [ ! -e gate ]; do sleep 0.05; done; echo end >> runs`
	for _, tc := range []struct {
		name   string
		reload func(dir string) *appfile.Spec
		// skipped is in the skip line of the reloaded job's entry, not in
		// the old entry's.
		skipped string
	}{
		{
			name: "schedule changed: a new entry at the same index",
			reload: func(dir string) *appfile.Spec {
				return jobSpec("long", dir, "@every 1000ms", script)
			},
			skipped: "cron=@every 1000ms",
		},
		{
			name: "job moved: its entry at a new index",
			reload: func(dir string) *appfile.Spec {
				spec := jobSpec("long", dir, "@every 1s", script)
				spec.Jobs = append([]appfile.Job{{Cron: "@yearly", Command: []string{"true"}}}, spec.Jobs...)
				return spec
			},
			skipped: "job=1",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, rec := newTestScheduler(t, newRecWaker(t), nil)
			dir := t.TempDir()
			runs := filepath.Join(dir, "runs")
			s.Apply([]*appfile.Spec{jobSpec("long", dir, "@every 1s", script)})
			waitFor(t, 20*time.Second, "the first run to start", func() bool { return len(lines(t, runs)) > 0 })

			s.Apply([]*appfile.Spec{tc.reload(dir)})
			waitFor(t, 20*time.Second, "the reloaded job to fire", func() bool {
				return len(lines(t, runs)) > 1 || rec.has("job still running, skipping this run", "app=long", tc.skipped)
			})
			if got := lines(t, runs); len(got) > 1 {
				t.Fatalf("the reloaded job started while the first run went on: %q", got)
			}
			if err := os.WriteFile(filepath.Join(dir, "gate"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 20*time.Second, "the first run to end", func() bool {
				got := lines(t, runs)
				return len(got) > 1 && got[1] == "end"
			})
		})
	}
}
