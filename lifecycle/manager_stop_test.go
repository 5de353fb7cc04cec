package lifecycle

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

func TestIdleStopAfterIdleTimeout(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web")
	spec.IdleTimeout = 100 * time.Millisecond
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("web")
	pid := h.status("web").Pid
	release()
	h.waitState("web", Stopped)
	if testutil.ProcessAlive(pid) {
		t.Fatalf("process %d alive after idle stop", pid)
	}
	h.waitLog(`msg="app stopped"`, "app=web", "reason=idle", "uptime=")

	// The next connection wakes it again.
	up, release := h.wake("web")
	defer release()
	if got := echo(t, up, "again"); got != "again" {
		t.Fatalf("echo after re-wake = %q", got)
	}
	if st := h.status("web"); st.Starts != 2 || st.Pid == pid {
		t.Fatalf("after re-wake: %s", fmtStatus(st))
	}
}

func TestOpenLeaseKeepsAppUp(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web")
	spec.IdleTimeout = 50 * time.Millisecond
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("web")
	pid := h.status("web").Pid
	// An observation window of many idle timeouts: a quiet open lease must
	// keep the app up through all of them.
	<-time.After(10 * spec.IdleTimeout)
	if st := h.status("web"); st.State != Ready || st.Pid != pid {
		t.Fatalf("with an open lease: %s, want ready with pid %d", fmtStatus(st), pid)
	}
	release()
	h.waitState("web", Stopped)
}

func TestIdleTimerFiringWithNewLeaseIsAbandoned(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web")
	spec.IdleTimeout = time.Hour
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("web")
	defer release()
	// The timer fires late, as if it had waited for the lock while the
	// lease was taken: it must see the lease and leave the app alone.
	h.m.mu.Lock()
	a := h.m.apps["web"]
	a.lastActivity = time.Now().Add(-2 * time.Hour)
	h.m.mu.Unlock()
	h.m.idleFired(a)
	if st := h.status("web"); st.State != Ready {
		t.Fatalf("idle timer stopped an app with an open lease: %s", fmtStatus(st))
	}
}

func TestRapidWakeReleaseNeverRoutesToDyingProcess(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web")
	spec.IdleTimeout = time.Millisecond // idle stops race every new lease
	h.m.Apply([]*appfile.Spec{spec})
	for i := range 30 {
		up, release := h.wake("web")
		if got := echo(t, up, "x"+strconv.Itoa(i)); got != "x"+strconv.Itoa(i) {
			t.Fatalf("round %d: echo = %q", i, got)
		}
		release()
		if i%3 == 0 {
			h.waitState("web", Stopped)
		}
	}
	if st := h.status("web"); st.Starts < 10 {
		t.Fatalf("expected idle stops between rounds: %s", fmtStatus(st))
	}
}

func TestWakeWhileStopping(t *testing.T) {
	h := newHarness(t)
	// Ignores SIGTERM: stopping lasts the whole stop timeout.
	spec := h.spec("web", "-ignore-term")
	spec.StopTimeout = 500 * time.Millisecond
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("web")
	old := h.status("web")
	release()
	stopped := make(chan error, 1)
	go func() { stopped <- h.m.Stop(context.Background(), "web", "manual") }()
	h.waitState("web", Stopping)

	up, release := h.wake("web")
	defer release()
	// Served by a fresh process, and the old one is gone.
	if testutil.ProcessAlive(old.Pid) {
		t.Fatalf("wake returned while the old process %d lived", old.Pid)
	}
	st := h.status("web")
	if st.Pid == old.Pid || st.Starts != 2 || st.Upstream != up.String() {
		t.Fatalf("after wake during stop: %s (old pid %d)", fmtStatus(st), old.Pid)
	}
	if got := echo(t, up, "fresh"); got != "fresh" {
		t.Fatalf("echo = %q", got)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

func TestStopDuringStart(t *testing.T) {
	h := newHarness(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	h.m.Apply([]*appfile.Spec{h.spec("slow", "-mode", "sleep", "-pidfile", pidfile)})
	// KeepUp starts without waiting, so no waiter restarts it.
	if err := h.m.KeepUp("slow", time.Now()); err != nil {
		t.Fatal(err)
	}
	pid := testutil.ReadPidFile(t, pidfile)
	if st := h.status("slow"); st.State != Starting {
		t.Fatalf("before stop: %s", fmtStatus(st))
	}
	if err := h.m.Stop(context.Background(), "slow", "manual"); err != nil {
		t.Fatal(err)
	}
	st := h.status("slow")
	if st.State != Stopped || st.LastError != "" || testutil.ProcessAlive(pid) {
		t.Fatalf("after stop during start: %s, pid %d alive=%v", fmtStatus(st), pid, testutil.ProcessAlive(pid))
	}
	h.waitLog(`msg="app stopped"`, "app=slow", "reason=manual")
}

func TestStopDuringBackoff(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.BackoffMin, c.BackoffMax = time.Hour, time.Hour })
	h.m.Apply([]*appfile.Spec{h.spec("bad", "-crash")})
	_, _, err := h.m.Wake(context.Background(), "bad")
	wantErr(t, err, ErrStartFailed)
	h.waitState("bad", Failed)
	if err := h.m.Stop(context.Background(), "bad", "manual"); err != nil {
		t.Fatal(err)
	}
	if st := h.status("bad"); st.State != Stopped {
		t.Fatalf("after stop during backoff: %s", fmtStatus(st))
	}
	// Stopped, not backing off: the next wake tries again.
	_, _, err = h.m.Wake(context.Background(), "bad")
	wantErr(t, err, ErrStartFailed)
	if st := h.status("bad"); st.Starts != 2 {
		t.Fatalf("wake after stop did not retry: %s", fmtStatus(st))
	}
}

func TestStopKillsProcessGroupAfterStopTimeout(t *testing.T) {
	h := newHarness(t)
	gcfile := filepath.Join(t.TempDir(), "gc.pid")
	spec := h.spec("web", "-ignore-term", "-grandchild", gcfile)
	spec.StopTimeout = 200 * time.Millisecond
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("web")
	release()
	pid, gc := h.status("web").Pid, testutil.ReadPidFile(t, gcfile)
	if err := h.m.Stop(context.Background(), "web", "manual"); err != nil {
		t.Fatal(err)
	}
	if testutil.ProcessAlive(pid) || testutil.ProcessAlive(gc) {
		t.Fatalf("after stop: app %d alive=%v, grandchild %d alive=%v", pid, testutil.ProcessAlive(pid), gc, testutil.ProcessAlive(gc))
	}
}

func TestStopSignalIsUsed(t *testing.T) {
	h := newHarness(t)
	// testapp exits 0 on SIGINT; with SIGTERM ignored, only the configured
	// signal can end it before the (long) stop timeout.
	spec := h.spec("web", "-ignore-term")
	spec.StopSignal = syscall.SIGINT
	spec.StopTimeout = time.Minute
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("web")
	release()
	began := time.Now()
	if err := h.m.Stop(context.Background(), "web", "manual"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 30*time.Second {
		t.Fatalf("stop took %v: the stop signal was not SIGINT", took)
	}
}

func TestCrashOfReadyAppStopsIt(t *testing.T) {
	// BackoffMax below the app's uptime: the crash is not a crash loop.
	h := newHarness(t, func(c *Config) { c.BackoffMin, c.BackoffMax = 10*time.Millisecond, 20*time.Millisecond })
	h.m.Apply([]*appfile.Spec{h.spec("web", "-crash-after", "1s")})
	_, release := h.wake("web")
	pid := h.status("web").Pid
	release()
	st := h.waitState("web", Stopped)
	if !strings.Contains(st.LastError, "exit status 3") {
		t.Fatalf("after crash: %s", fmtStatus(st))
	}
	line := h.waitLog(`msg="app exited"`, "app=web", "pid="+strconv.Itoa(pid), "exit status 3")
	if !strings.Contains(line, "crashing on purpose") {
		t.Errorf("crash log lacks the stderr tail: %s", line)
	}
	// Not restarted by itself (on-demand), but the next wake starts it.
	if st.Starts != 1 {
		t.Fatalf("crashed on-demand app restarted by itself: %s", fmtStatus(st))
	}
	_, release = h.wake("web")
	release()
	if st := h.status("web"); st.Starts != 2 {
		t.Fatalf("after wake: %s", fmtStatus(st))
	}
}

func TestCrashLoopBacksOff(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.BackoffMin, c.BackoffMax = time.Hour, time.Hour })
	h.m.Apply([]*appfile.Spec{h.spec("web", "-crash-after", "1s")})
	_, release := h.wake("web")
	release()
	// Crashed soon after ready: counted as a failure, wakes fail fast.
	h.waitState("web", Failed)
	_, _, err := h.m.Wake(context.Background(), "web")
	wantErr(t, err, ErrBackoff)
}

func TestAlwaysAppRestartsAfterCrash(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.BackoffMin, c.BackoffMax = 20*time.Millisecond, 100*time.Millisecond })
	spec := h.spec("svc", "-crash-after", "500ms")
	spec.Mode = appfile.Always
	h.m.Apply([]*appfile.Spec{spec})
	// Started at boot without a wake, crashed once ready, started again.
	h.waitLog(`msg="app exited"`, "app=svc", "exit status 3")
	h.waitLog(`msg="app started"`, "app=svc", "reason=crash")
	testutil.Eventually(t, mgrWait, func() bool { return h.status("svc").Restarts >= 2 }, "always app not restarted twice")
	if st := h.status("svc"); st.Connections != 0 || st.Starts != st.Restarts+1 {
		t.Fatalf("after restarts: %s", fmtStatus(st))
	}
}

func TestPersistentAppStartsAtBootAndNeverIdles(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("svc")
	spec.Mode = appfile.Persistent
	spec.IdleTimeout = 20 * time.Millisecond
	h.m.Apply([]*appfile.Spec{spec})
	st := h.waitState("svc", Ready)
	h.waitLog(`msg="app started"`, "app=svc", "reason=boot")
	_, release := h.wake("svc")
	release()
	// Observation window of many idle timeouts.
	<-time.After(20 * spec.IdleTimeout)
	if now := h.status("svc"); now.State != Ready || now.Pid != st.Pid {
		t.Fatalf("persistent app changed: %s, was pid %d", fmtStatus(now), st.Pid)
	}
}

func TestKeepUpIdleCountdownStartsWhenKeepEnds(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web")
	spec.IdleTimeout = time.Second
	h.m.Apply([]*appfile.Spec{spec})
	until := time.Now().Add(300 * time.Millisecond)
	if err := h.m.KeepUp("web", until); err != nil {
		t.Fatal(err)
	}
	h.waitLog(`msg="app started"`, "app=web", "reason=cron")
	started := h.waitState("web", Ready)

	// The keep window is over, the idle countdown has just begun: still up.
	// (A check that comes late, past the idle timeout too, proves nothing
	// and is skipped rather than failed.)
	<-time.After(time.Until(until))
	st := h.status("web")
	if time.Now().Before(until.Add(spec.IdleTimeout)) && (st.State != Ready || st.Pid != started.Pid) {
		t.Fatalf("right after the keep window: %s, want still ready with pid %d", fmtStatus(st), started.Pid)
	}
	h.waitState("web", Stopped)
	if now, end := time.Now(), until.Add(spec.IdleTimeout); now.Before(end) {
		t.Fatalf("stopped at %v, before keep + idle_timeout ended at %v", now, end)
	}
	h.waitLog(`msg="app stopped"`, "app=web", "reason=idle")
	wantErr(t, h.m.KeepUp("nope", until), ErrUnknownApp)
}

func TestKeepUpOfARunningAppExtendsItsWindowAndNeverShortensIt(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web")
	spec.IdleTimeout = time.Second
	h.m.Apply([]*appfile.Spec{spec})
	if err := h.m.KeepUp("web", time.Now()); err != nil {
		t.Fatal(err)
	}
	first := h.waitState("web", Ready)

	// Running, idle for at most a second: a second wake pushes the stop out
	// to its own window's end plus the idle timeout.
	later := time.Now().Add(time.Second)
	if err := h.m.KeepUp("web", later); err != nil {
		t.Fatal(err)
	}
	// A wake whose window ends earlier leaves the later one in force.
	if err := h.m.KeepUp("web", time.Now()); err != nil {
		t.Fatal(err)
	}
	h.waitState("web", Stopped)
	if now, end := time.Now(), later.Add(spec.IdleTimeout); now.Before(end) {
		t.Fatalf("stopped at %v, before the extended window + idle_timeout ended at %v", now, end)
	}
	h.waitLog(`msg="app stopped"`, "app=web", "reason=idle", "pid="+strconv.Itoa(first.Pid))
	if st := h.status("web"); st.Starts != 1 {
		t.Fatalf("the wakes of a running app started it again: %s", fmtStatus(st))
	}
}

func TestRestartReplacesProcess(t *testing.T) {
	h := newHarness(t)
	h.m.Apply([]*appfile.Spec{h.spec("web")})
	_, release := h.wake("web")
	release()
	old := h.status("web")
	if err := h.m.Restart(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	st := h.status("web")
	if st.State != Ready || st.Pid == old.Pid || st.Restarts != 1 || testutil.ProcessAlive(old.Pid) {
		t.Fatalf("after restart: %s (old pid %d)", fmtStatus(st), old.Pid)
	}
}

func TestManualStartIgnoresBackoff(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.BackoffMin, c.BackoffMax = time.Hour, time.Hour })
	h.m.Apply([]*appfile.Spec{h.spec("bad", "-crash")})
	wantErr(t, h.m.Start(context.Background(), "bad", "cron"), ErrStartFailed)
	h.waitState("bad", Failed)
	wantErr(t, h.m.Start(context.Background(), "bad", "cron"), ErrBackoff)
	wantErr(t, h.m.Start(context.Background(), "bad", "manual"), ErrStartFailed)
	if st := h.status("bad"); st.Starts != 2 {
		t.Fatalf("manual start did not spawn: %s", fmtStatus(st))
	}
}

func TestShutdownFailsWaitersAndStopsEveryApp(t *testing.T) {
	h := newHarness(t)
	stubborn := h.spec("stubborn", "-ignore-term")
	stubborn.StopTimeout = 300 * time.Millisecond
	h.m.Apply([]*appfile.Spec{h.spec("a"), stubborn, h.spec("slow", "-mode", "sleep")})
	var pids []int
	for _, name := range []string{"a", "stubborn"} {
		_, release := h.wake(name)
		defer release()
		pids = append(pids, h.status(name).Pid)
	}
	var wg sync.WaitGroup
	const waiters = 5
	errs := make([]error, waiters)
	for i := range waiters {
		wg.Go(func() { _, _, errs[i] = h.m.Wake(context.Background(), "slow") })
	}
	testutil.Eventually(t, mgrWait, func() bool {
		st := h.status("slow")
		return st.Pending == waiters && st.Pid != 0
	}, "waiters not pending")
	pids = append(pids, h.status("slow").Pid)

	if err := h.m.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, err := range errs {
		wantErr(t, err, ErrShuttingDown)
	}
	for _, pid := range pids {
		if testutil.ProcessAlive(pid) {
			t.Errorf("process %d outlived shutdown", pid)
		}
	}
	for _, st := range h.m.Status() {
		if st.State != Stopped {
			t.Errorf("after shutdown: %s", fmtStatus(st))
		}
	}
	_, _, err := h.m.Wake(context.Background(), "a")
	wantErr(t, err, ErrShuttingDown)
	h.waitLog(`msg="app stopped"`, "app=stubborn", "reason=shutdown")
}

func TestAlwaysAppRetriesFailedStartsAfterBackoff(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.BackoffMin, c.BackoffMax = 10*time.Millisecond, 40*time.Millisecond })
	spec := h.spec("svc", "-crash")
	spec.Mode = appfile.Always
	h.m.Apply([]*appfile.Spec{spec})
	// No wake: the backoff timer alone starts it again, with a growing delay.
	testutil.Eventually(t, mgrWait, func() bool { return h.status("svc").Starts >= 4 }, "always app not retried")
	h.waitLog(`msg="app failed to start"`, "app=svc", "failures=3 ", "backoff=40ms")
}
