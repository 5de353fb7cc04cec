package cron

import (
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

func TestWakeEntryCallsKeepUpWithKeepWindow(t *testing.T) {
	w := newRecWaker(t)
	s, _ := newTestScheduler(t, w, nil)
	s.Apply([]*appfile.Spec{{
		Name: "warm",
		Wake: []appfile.Wake{{Cron: "@every 1s", Keep: time.Hour}},
	}})
	if n := s.NextWake("warm"); n.IsZero() || n.After(time.Now().Add(time.Minute)) {
		t.Fatalf("NextWake = %v, want within a minute from now", n)
	}
	waitFor(t, 20*time.Second, "a KeepUp call", func() bool { return len(w.calls()) > 0 })
	c := w.calls()[0]
	if c.app != "warm" {
		t.Errorf("KeepUp app = %q, want warm", c.app)
	}
	// until = now+keep, computed just before the call.
	if d := c.until.Sub(c.at); d < 59*time.Minute || d > time.Hour {
		t.Errorf("KeepUp until is %s after the call, want about 1h", d)
	}
	if n := s.NextWake("nosuchapp"); !n.IsZero() {
		t.Errorf("NextWake of an unknown app = %v, want zero", n)
	}
}

func TestPanicInWakerIsRecoveredAndLogged(t *testing.T) {
	w := newRecWaker(t)
	w.panicKeepUp = 1
	s, rec := newTestScheduler(t, w, nil)
	s.Apply([]*appfile.Spec{{Name: "boom", Wake: []appfile.Wake{{Cron: "@every 1s"}}}})
	waitFor(t, 20*time.Second, "the panic to be logged", func() bool {
		return rec.has("panic in scheduled entry", "app=boom", "keep-up exploded")
	})
	// The scheduler lives on: the next fire reaches KeepUp.
	waitFor(t, 20*time.Second, "a KeepUp call after the panic", func() bool { return len(w.calls()) > 0 })
}

func TestNextWakeCountsNeedsAppJobsOnly(t *testing.T) {
	w := newRecWaker(t)
	// Not started: the times come from the schedules.
	s := New(Config{Waker: w, Location: time.UTC})
	defer s.Shutdown(t.Context())
	s.Apply([]*appfile.Spec{
		{Name: "plain", Jobs: []appfile.Job{{Cron: "@every 1m", Command: []string{"true"}}}},
		{Name: "needy", Jobs: []appfile.Job{
			{Cron: "@every 1m", Command: []string{"true"}},
			{Cron: "@every 1h", Command: []string{"true"}, NeedsApp: true},
		}},
	})
	if n := s.NextWake("plain"); !n.IsZero() {
		t.Errorf("NextWake of an app whose jobs do not need it = %v, want zero", n)
	}
	n := s.NextWake("needy")
	if d := time.Until(n); d < 58*time.Minute || d > time.Hour+time.Second {
		t.Errorf("NextWake of needy is in %s, want the needs_app job's hour", d)
	}
}
