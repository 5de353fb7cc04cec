package cron

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

func TestJobRunsInDirWithEnvAndLogsWithMarkers(t *testing.T) {
	w := newRecWaker(t)
	var logDir string
	s, rec := newTestScheduler(t, w, func(c *Config) { logDir = c.LogDir })
	dir := t.TempDir()
	spec := jobSpec("tidy", dir, "@every 1s", `pwd >> out; echo "$GREETING $PORT" >> out; echo hello-from-job; echo oops >&2`)
	spec.Env = map[string]string{"GREETING": "hi"}
	s.Apply([]*appfile.Spec{spec})

	waitFor(t, 20*time.Second, "a job result", func() bool { _, ok := s.LastJob("tidy"); return ok })
	res, _ := s.LastJob("tidy")
	if res.Err != nil || res.ExitCode != 0 || res.Job != 0 || res.Duration <= 0 || res.Time.IsZero() {
		t.Errorf("LastJob = %+v, want job 0 exited 0 with a time and duration", res)
	}
	// Later runs append to what the first one wrote.
	want := dir + "\nhi \n"
	if got := readFile(t, filepath.Join(dir, "out")); !strings.HasPrefix(got, want) {
		t.Errorf("job wrote %q, want %q (cwd, env, no PORT without needs_app)", got, want)
	}
	log := readFile(t, filepath.Join(logDir, "tidy.log"))
	for _, part := range []string{
		"--- job 0 (cron @every 1s) started ---\n",
		"hello-from-job\noops\n",
		"--- job 0 exited 0 after ",
	} {
		if !strings.Contains(log, part) {
			t.Errorf("app log lacks %q:\n%s", part, log)
		}
	}
	if start, end := strings.Index(log, "started"), strings.Index(log, "hello-from-job"); start > end {
		t.Errorf("output before the start marker:\n%s", log)
	}
	if !rec.has("job finished", "app=tidy", "job=0", "exit_code=0", "duration=") {
		t.Errorf("no job finished record with app, job, exit code and duration")
	}
}

func TestJobExitStatusIsRecorded(t *testing.T) {
	w := newRecWaker(t)
	var logDir string
	s, rec := newTestScheduler(t, w, func(c *Config) { logDir = c.LogDir })
	s.Apply([]*appfile.Spec{jobSpec("sad", t.TempDir(), "@every 1s", "exit 3")})
	waitFor(t, 20*time.Second, "a job result", func() bool { _, ok := s.LastJob("sad"); return ok })
	res, _ := s.LastJob("sad")
	if res.ExitCode != 3 || res.Err == nil {
		t.Errorf("LastJob = %+v, want exit code 3 and an error", res)
	}
	if log := readFile(t, filepath.Join(logDir, "sad.log")); !strings.Contains(log, "--- job 0 exited 3 after ") {
		t.Errorf("app log lacks the exit marker:\n%s", log)
	}
	if !rec.has("job failed", "app=sad", "exit_code=3") {
		t.Errorf("no job failed record")
	}
}

func TestJobTimeoutKillsWholeProcessGroup(t *testing.T) {
	w := newRecWaker(t)
	s, _ := newTestScheduler(t, w, func(c *Config) { c.KillGrace = 500 * time.Millisecond })
	dir := t.TempDir()
	// Everything ignores SIGTERM, so the group needs the SIGKILL too; the
	// background sleep is a grandchild that outlives a killed shell.
	spec := jobSpec("slow", dir, "@every 1s", `trap '' TERM; sleep 1000 & echo $! >> bg.pids; sleep 1000`)
	spec.Jobs[0].Timeout = time.Second
	s.Apply([]*appfile.Spec{spec})

	waitFor(t, 30*time.Second, "a job result", func() bool { _, ok := s.LastJob("slow"); return ok })
	res, _ := s.LastJob("slow")
	if res.Err == nil || !strings.Contains(res.Err.Error(), "timed out") || res.ExitCode != -1 {
		t.Errorf("LastJob = %+v, want a timeout", res)
	}
	if res.Duration < time.Second {
		t.Errorf("job ended after %s, before its 1s timeout", res.Duration)
	}
	// The first line is the first run's grandchild (later runs append).
	pid, err := strconv.Atoi(lines(t, filepath.Join(dir, "bg.pids"))[0])
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the grandchild to die", func() bool { return !testutil.ProcessAlive(pid) })
}

func TestOverlappingRunIsSkipped(t *testing.T) {
	w := newRecWaker(t)
	s, rec := newTestScheduler(t, w, nil)
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	s.Apply([]*appfile.Spec{jobSpec("long", dir, "@every 1s", `echo start >> runs; sleep 2.5; echo end >> runs`)})

	waitFor(t, 30*time.Second, "a skipped run and two finished ones", func() bool {
		n := 0
		for _, l := range lines(t, runs) {
			if l == "end" {
				n++
			}
		}
		return n >= 2 && rec.has("job still running, skipping this run", "app=long", "job=0")
	})
	got := lines(t, runs)
	for i, l := range got {
		want := "start"
		if i%2 == 1 {
			want = "end"
		}
		if l != want {
			t.Fatalf("runs overlapped: %q", got)
		}
	}
}

func TestNeedsAppJobHoldsLeaseAndGetsPort(t *testing.T) {
	w := newRecWaker(t)
	s, _ := newTestScheduler(t, w, nil)
	dir := t.TempDir()
	spec := jobSpec("api", dir, "@every 1s", `echo "$PORT $URL" > seen; while [ ! -e go ]; do sleep 0.05; done`)
	spec.Env = map[string]string{"URL": "http://127.0.0.1:${PORT}/"}
	spec.Jobs[0].NeedsApp = true
	spec.Jobs[0].Timeout = time.Minute
	s.Apply([]*appfile.Spec{spec})

	seen := filepath.Join(dir, "seen")
	waitFor(t, 20*time.Second, "the job to start", func() bool { return strings.HasSuffix(readFile(t, seen), "\n") })
	port := strconv.Itoa(int(w.upstream.Port()))
	if got, want := readFile(t, seen), port+" http://127.0.0.1:"+port+"/\n"; got != want {
		t.Errorf("job saw %q, want %q", got, want)
	}
	if leased, _, _ := w.counts(); leased != 1 {
		t.Errorf("%d leases held while the job runs, want 1", leased)
	}
	// A start the job causes is a scheduled one, not a connection's.
	w.mu.Lock()
	reasons := slices.Clone(w.wakeReasons)
	w.mu.Unlock()
	if len(reasons) != 1 || reasons[0] != "cron" {
		t.Errorf("the job woke its app with reasons %q, want [cron]", reasons)
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "a job result", func() bool { _, ok := s.LastJob("api"); return ok })
	waitFor(t, 10*time.Second, "every lease released", func() bool {
		leased, leases, releases := w.counts()
		return leased == 0 && leases == releases
	})
}

func TestProcessesLeftBehindByAJobAreStopped(t *testing.T) {
	w := newRecWaker(t)
	s, rec := newTestScheduler(t, w, nil)
	dir := t.TempDir()
	// Exits 0 at once, leaving a background sleep in its group.
	s.Apply([]*appfile.Spec{jobSpec("leaky", dir, "@every 1s", `sleep 1000 & echo $! >> bg.pids`)})
	waitFor(t, 20*time.Second, "a job result", func() bool { _, ok := s.LastJob("leaky"); return ok })
	if res, _ := s.LastJob("leaky"); res.Err != nil || res.ExitCode != 0 {
		t.Errorf("LastJob = %+v, want a clean exit", res)
	}
	pid, err := strconv.Atoi(lines(t, filepath.Join(dir, "bg.pids"))[0])
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the leftover process to die", func() bool { return !testutil.ProcessAlive(pid) })
	if !rec.has("job left processes behind", "app=leaky") {
		t.Errorf("leftover processes not logged")
	}
}

func TestNeedsAppJobNotRunWhenWakeFails(t *testing.T) {
	w := newRecWaker(t)
	// As the Manager words it: the app and what failed.
	w.wakeErr = errors.New(`waking app "down": unknown app`)
	var logDir string
	s, _ := newTestScheduler(t, w, func(c *Config) { logDir = c.LogDir })
	dir := t.TempDir()
	spec := jobSpec("down", dir, "@every 1s", `echo ran > ran`)
	spec.Jobs[0].NeedsApp = true
	s.Apply([]*appfile.Spec{spec})
	waitFor(t, 20*time.Second, "a job result", func() bool { _, ok := s.LastJob("down"); return ok })
	res, _ := s.LastJob("down")
	if res.Err == nil || res.Err.Error() != `waking app "down": unknown app` {
		t.Errorf("LastJob = %+v, want the wake error", res)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Errorf("the job ran although its app did not wake")
	}
	if log := readFile(t, filepath.Join(logDir, "down.log")); !strings.Contains(log, `--- job 0 (cron @every 1s) not run: waking app "down": unknown app ---`) {
		t.Errorf("app log lacks the not-run marker:\n%s", log)
	}
}

func TestJobProcessGroupIsTrackedWhileItRuns(t *testing.T) {
	type call struct {
		pgid      int
		app, prog string
		untracked bool
	}
	var mu sync.Mutex
	var calls []*call
	start := func(cmd *exec.Cmd, spec *appfile.Spec, prog string) (func(), error) {
		app := spec.Name
		if cmd.SysProcAttr == nil || !cmd.SysProcAttr.Setpgid {
			t.Errorf("job command does not ask for a process group of its own")
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		c := &call{pgid: cmd.Process.Pid, app: app, prog: prog}
		mu.Lock()
		calls = append(calls, c)
		mu.Unlock()
		return func() {
			mu.Lock()
			defer mu.Unlock()
			if c.untracked {
				t.Errorf("group %d untracked twice", c.pgid)
			}
			c.untracked = true
		}, nil
	}
	s, _ := newTestScheduler(t, newRecWaker(t), func(c *Config) { c.StartGroup = start })
	dir := t.TempDir()
	s.Apply([]*appfile.Spec{jobSpec("tracked", dir, "@every 1s", `echo $$ >> pids`)})
	waitFor(t, 20*time.Second, "a job result", func() bool { _, ok := s.LastJob("tracked"); return ok })
	pid, err := strconv.Atoi(lines(t, filepath.Join(dir, "pids"))[0])
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) == 0 {
		t.Fatal("StartGroup never called")
	}
	c := calls[0]
	if c.pgid != pid || c.app != "tracked" || c.prog != "/bin/sh" {
		t.Errorf("StartGroup for group %d (%q, %q), want group %d (%q, %q)", c.pgid, c.app, c.prog, pid, "tracked", "/bin/sh")
	}
	// The result is recorded after the job's group was untracked.
	if !c.untracked {
		t.Errorf("group %d still tracked after its job finished", c.pgid)
	}
}

// panickyLogs is a LogOpener whose first opens panic, as a bug in a piece
// that a job run goes through would; later opens go to the real logs.
type panickyLogs struct {
	LogOpener
	panics atomic.Int32
}

func (p *panickyLogs) Open(app string) (*os.File, func(context.Context) error, error) {
	if p.panics.Add(-1) >= 0 {
		panic("log opener exploded")
	}
	return p.LogOpener.Open(app)
}

func TestPanicInJobIsRecoveredLoggedAndRecorded(t *testing.T) {
	logs, _ := newRotatingLogs(t)
	opener := &panickyLogs{LogOpener: logs}
	opener.panics.Store(1)
	s, rec := newTestScheduler(t, newRecWaker(t), func(c *Config) { c.Logs = opener })
	dir := t.TempDir()
	s.Apply([]*appfile.Spec{jobSpec("boom", dir, "@every 1s", "echo ran >> runs")})

	waitFor(t, 20*time.Second, "a job result", func() bool { _, ok := s.LastJob("boom"); return ok })
	res, _ := s.LastJob("boom")
	if res.Err == nil || !strings.HasPrefix(res.Err.Error(), "panic: log opener exploded") || res.ExitCode != -1 || res.Time.IsZero() {
		t.Errorf("LastJob after a panic = %+v, want exit code -1 and a \"panic: ...\" error", res)
	}
	if !rec.has("panic in scheduled entry", "app=boom", "job=0", "panic=log opener exploded", "stack=") {
		t.Errorf("the panic was not logged with app, job and stack")
	}
	if !rec.has("job failed", "app=boom", "exit_code=-1", "err=panic: log opener exploded") {
		t.Errorf("no job failed record for the panicked run")
	}
	// The panicked run is over: the next fire runs the job, not skipped as
	// overlapping it.
	waitFor(t, 20*time.Second, "a good run after the panic", func() bool {
		res, _ := s.LastJob("boom")
		return res.Err == nil && len(lines(t, filepath.Join(dir, "runs"))) > 0
	})
	if rec.has("job still running", "app=boom") {
		t.Errorf("a run after the panic was skipped as overlapping")
	}
}
