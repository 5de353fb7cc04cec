package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// killDaemonAndReaper SIGKILLs the daemon in a way that lets its apps
// survive. The daemon is stopped first, so that it cannot restart its
// reaper; then the reaper is killed, then the daemon. (Stopping the reaper
// instead is not enough: when the daemon dies the kernel sends SIGHUP and
// SIGCONT to a stopped process in a newly orphaned group, and the reaper
// wakes up to its EOF.)
func killDaemonAndReaper(t *testing.T, d *runningDaemon) {
	t.Helper()
	pid := d.cmd.Process.Pid
	reapers := childrenOf(pid, "trap")
	if len(reapers) != 1 {
		t.Fatalf("found reapers %v under daemon %d, want one", reapers, pid)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return testutil.ProcState(pid) == 'T' },
		"daemon %d not stopped by SIGSTOP", pid)
	if err := syscall.Kill(reapers[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { s := testutil.ProcState(reapers[0]); return s == 'Z' || s == 0 },
		"reaper %d not dead after SIGKILL", reapers[0])
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.done
}

func TestStaleAppOfADeadDaemonIsStoppedAtStart(t *testing.T) {
	for _, c := range containments {
		t.Run(c, func(t *testing.T) { testStaleAppStoppedAtStart(t, c) })
	}
}

func testStaleAppStoppedAtStart(t *testing.T, c string) {
	forceContainment(t, c)
	apps, state := t.TempDir(), t.TempDir()
	listen, upstream := testutil.FreeAddr(t), testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	// A fixed upstream: a survivor holding it would make every new start
	// fail with "address in use".
	// A long idle_timeout: the app must still run when the daemon dies.
	testutil.WriteFile(t, filepath.Join(apps, "echo.yaml"), fmt.Sprintf(
		"listen: %q\nupstream: %q\ncommand: [%q, \"-mode\", \"echo\", \"-pidfile\", %q]\nidle_timeout: 10m\nstop_timeout: 2s\n",
		listen, upstream, testutil.TestApp(t), pidfile))
	d1 := startDaemon(t, apps, "-state", state)
	requireContainment(t, d1, c)
	if got := testutil.EchoOnce(t, listen, "first"); got != "first" {
		t.Fatalf("echo = %q", got)
	}
	old := testutil.ReadPidFile(t, pidfile)
	t.Cleanup(func() { _ = syscall.Kill(-old, syscall.SIGKILL) })
	killDaemonAndReaper(t, d1)
	if !testutil.ProcessAlive(old) {
		applog, _ := os.ReadFile(filepath.Join(state, "logs", "echo.log"))
		t.Fatalf("app %d did not survive the daemon and its reaper (state %q): the test proves nothing; log %s", old, testutil.ProcState(old), applog)
	}
	if err := os.Remove(pidfile); err != nil {
		t.Fatal(err)
	}

	d2 := startDaemon(t, apps, "-state", state)
	want := fmt.Sprintf("still running from a previous daemon (pgid %d); stopping it", old)
	if c == "cgroup" {
		// Found by its cgroup, not by a record.
		want = `found app \"echo\" still running from a previous daemon (cgroup `
	}
	if !strings.Contains(d2.out.String(), want) {
		t.Fatalf("new daemon did not report the stale app (%q):\n%s", want, d2.out)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return !testutil.ProcessAlive(old) },
		"stale app %d still running", old)
	if got := testutil.EchoOnce(t, listen, "second"); got != "second" {
		t.Fatalf("echo after recovery = %q", got)
	}
	if pid := testutil.ReadPidFile(t, pidfile); pid == old {
		t.Fatalf("served by the stale process %d", old)
	}
}
