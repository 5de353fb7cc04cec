package e2e

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

func TestAlwaysAppIsRestartedAfterACrash(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	testutil.WriteFile(t, filepath.Join(apps, "core.yaml"), testutil.EchoApp(t, listen, pidfile, "")+"mode: always\n")
	d := startDaemon(t, apps)
	pid := testutil.ReadPidFile(t, pidfile) // started with the daemon, no connection
	// Killed once ready: a kill before its probe passed would be a failed
	// start, not a crash.
	testutil.Eventually(t, 10*time.Second, func() bool { return strings.Contains(d.out.String(), `msg="app started" app=core`) },
		"the always app never got ready:\n%s", d.out)

	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var next int
	testutil.Eventually(t, 20*time.Second, func() bool {
		next = pidIn(pidfile)
		return next != 0 && next != pid && testutil.ProcessAlive(next)
	}, "no new process after the always app %d was killed; daemon output:\n%s", pid, d.out)
	if testutil.ProcessAlive(pid) {
		t.Errorf("killed pid %d is still alive (or an unreaped zombie)", pid)
	}
	// The daemon's log reaches d.out through a pipe: the new process's
	// pidfile can be seen first.
	testutil.Eventually(t, 10*time.Second, func() bool { return strings.Contains(d.out.String(), "app exited") },
		"the crash was not logged:\n%s", d.out)
	if got := testutil.EchoOnce(t, listen, "after the restart"); got != "after the restart" {
		t.Fatalf("echo after the restart = %q", got)
	}
	if got := pidIn(pidfile); got != next {
		t.Fatalf("the connection was served by pid %d, not the restarted %d", got, next)
	}
}

func TestHotAddedPersistentAppStartsWithoutAConnection(t *testing.T) {
	apps := t.TempDir()
	d := startDaemon(t, apps)
	listen := testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	testutil.WriteFile(t, filepath.Join(apps, "db.yaml"), testutil.EchoApp(t, listen, pidfile, "")+"mode: persistent\n")

	var pid int
	testutil.Eventually(t, reloadWait, func() bool {
		pid = pidIn(pidfile)
		return pid != 0 && testutil.ProcessAlive(pid)
	}, "the hot-added persistent app did not start; daemon output:\n%s", d.out)
	if got := testutil.EchoOnce(t, listen, "persistent"); got != "persistent" {
		t.Fatalf("echo = %q", got)
	}
	if got := pidIn(pidfile); got != pid {
		t.Fatalf("the connection was served by pid %d, not the one started by the reload (%d)", got, pid)
	}
}
