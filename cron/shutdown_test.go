package cron

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

func TestShutdownKillsJobsStillRunningAfterGrace(t *testing.T) {
	w := newRecWaker(t)
	s, _ := newTestScheduler(t, w, func(c *Config) { c.ShutdownGrace = 300 * time.Millisecond })
	dir := t.TempDir()
	// SIGTERM is ignored: only the kill after the grace ends it.
	s.Apply([]*appfile.Spec{jobSpec("stuck", dir, "@every 1s", `trap '' TERM; echo $$ > pid; sleep 1000 & sleep 1000`)})
	pidFile := filepath.Join(dir, "pid")
	waitFor(t, 20*time.Second, "the job to start", func() bool { return strings.HasSuffix(readFile(t, pidFile), "\n") })
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, pidFile)))
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	err = s.Shutdown(context.Background())
	if err == nil || !strings.Contains(err.Error(), "killed 1 running job") {
		t.Errorf("Shutdown = %v, want an error about the killed job", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("Shutdown returned after %s, before the 300ms grace", d)
	}
	if testutil.ProcessAlive(pid) {
		t.Errorf("job process %d outlived Shutdown", pid)
	}
	res, ok := s.LastJob("stuck")
	if !ok || res.Err == nil || !strings.Contains(res.Err.Error(), "killed at shutdown") {
		t.Errorf("LastJob = %+v, %v; want a job killed at shutdown", res, ok)
	}
}

func TestShutdownWaitsForJobsWithinGrace(t *testing.T) {
	w := newRecWaker(t)
	s, _ := newTestScheduler(t, w, func(c *Config) { c.ShutdownGrace = 30 * time.Second })
	dir := t.TempDir()
	s.Apply([]*appfile.Spec{jobSpec("brief", dir, "@every 1s", `echo started > mark; sleep 1; echo done >> mark`)})
	mark := filepath.Join(dir, "mark")
	waitFor(t, 20*time.Second, "the job to start", func() bool { return readFile(t, mark) != "" })
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if got := readFile(t, mark); got != "started\ndone\n" {
		t.Errorf("job wrote %q: it did not run to completion", got)
	}
	res, ok := s.LastJob("brief")
	if !ok || res.Err != nil {
		t.Errorf("LastJob = %+v, %v; want a clean exit", res, ok)
	}
	// After Shutdown nothing is scheduled any more.
	s.Apply([]*appfile.Spec{{Name: "late", Wake: []appfile.Wake{{Cron: "@every 1s"}}}})
	if n := s.NextWake("late"); !n.IsZero() {
		t.Errorf("Apply after Shutdown scheduled a wake at %v", n)
	}
}
