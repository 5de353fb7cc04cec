package cron

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/applog"
)

// newRotatingLogs returns applog.Logs in a temporary directory that rotate
// past 1 MiB (its smallest size), closed at the end of the test (after the
// scheduler, whose cleanup is registered later).
func newRotatingLogs(t *testing.T) (*applog.Logs, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "logs")
	logs := applog.New(applog.Config{Dir: dir, MaxBytes: 1, MaxBackups: 5})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := logs.Close(ctx); err != nil {
			t.Errorf("closing logs: %v", err)
		}
	})
	return logs, dir
}

// backups returns the rotated files of app's log in dir.
func backups(t *testing.T, dir, app string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, app+"-*.log*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestJobOutputCountsTowardsLogRotation(t *testing.T) {
	logs, dir := newRotatingLogs(t)
	s, _ := newTestScheduler(t, newRecWaker(t), func(c *Config) { c.Logs = logs })
	// 1.2 MB in one run: more than the 1 MiB the log may grow to.
	s.Apply([]*appfile.Spec{jobSpec("chatty", t.TempDir(), "@every 1s",
		`head -c 1200000 /dev/zero | tr '\0' x; echo; echo job-done`)})
	waitFor(t, 20*time.Second, "a job result", func() bool { _, ok := s.LastJob("chatty"); return ok })
	if res, _ := s.LastJob("chatty"); res.Err != nil {
		t.Fatalf("job failed: %+v", res)
	}
	if b := backups(t, dir, "chatty"); len(b) == 0 {
		t.Fatalf("1.2 MB of job output did not rotate a 1 MiB log (files: %v)", b)
	}
	// The output is in the log before the result is recorded.
	if log := readFile(t, logs.Path("chatty")); !strings.Contains(log, "job-done\n--- job 0 exited 0 after ") {
		t.Errorf("current log lacks the job's last line and closing marker:\n%.300s", log)
	}
}

func TestJobRunningAcrossARotationWritesToTheNewLog(t *testing.T) {
	logs, dir := newRotatingLogs(t)
	s, _ := newTestScheduler(t, newRecWaker(t), func(c *Config) { c.Logs = logs })
	work := t.TempDir()
	// The job writes a line, waits (bounded) for the test's go-ahead file,
	// then writes another.
	s.Apply([]*appfile.Spec{jobSpec("long", work, "@every 1s",
		`echo before-rotation; i=0; while [ ! -e go ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done; echo after-rotation`)})
	waitFor(t, 20*time.Second, "the job's first line", func() bool {
		return strings.Contains(readFile(t, logs.Path("long")), "before-rotation")
	})

	// The app itself writes past the rotation size meanwhile.
	w, wait, err := logs.Open("long")
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("a", 1023) + "\n"
	for range 1100 {
		if _, err := fmt.Fprint(w, line); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := wait(ctx); err != nil {
		t.Fatal(err)
	}
	if len(backups(t, dir, "long")) == 0 {
		t.Fatal("the app's output did not rotate the log")
	}

	writeGo(t, filepath.Join(work, "go"))
	waitFor(t, 20*time.Second, "a job result", func() bool { _, ok := s.LastJob("long"); return ok })
	log := readFile(t, logs.Path("long"))
	if !strings.Contains(log, "after-rotation\n--- job 0 exited 0 after ") {
		t.Errorf("the job's output after the rotation is not in the current log:\n%.300s", log)
	}
}

func writeGo(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}
