package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// childrenOf returns the pids whose parent is ppid and whose command line
// contains substr.
func childrenOf(ppid int, substr string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(stat), ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(ppid) {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if strings.Contains(string(cmdline), substr) {
			pids = append(pids, pid)
		}
	}
	return pids
}

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
	testutil.Eventually(t, 10*time.Second, func() bool { return procState(pid) == 'T' },
		"daemon %d not stopped by SIGSTOP", pid)
	if err := syscall.Kill(reapers[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { s := procState(reapers[0]); return s == 'Z' || s == 0 },
		"reaper %d not dead after SIGKILL", reapers[0])
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.done
}

// procState returns the state letter of pid from /proc, 0 if gone.
func procState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

func TestStaleAppOfADeadDaemonIsStoppedAtStart(t *testing.T) {
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
	if got := testutil.EchoOnce(t, listen, "first"); got != "first" {
		t.Fatalf("echo = %q", got)
	}
	old := testutil.ReadPidFile(t, pidfile)
	t.Cleanup(func() { _ = syscall.Kill(-old, syscall.SIGKILL) })
	killDaemonAndReaper(t, d1)
	if !testutil.ProcessAlive(old) {
		applog, _ := os.ReadFile(filepath.Join(state, "logs", "echo.log"))
		t.Fatalf("app %d did not survive the daemon and its reaper (state %q): the test proves nothing; log %s", old, procState(old), applog)
	}
	if err := os.Remove(pidfile); err != nil {
		t.Fatal(err)
	}

	d2 := startDaemon(t, apps, "-state", state)
	if want := fmt.Sprintf("still running from a previous daemon (pgid %d); stopping it", old); !strings.Contains(d2.out.String(), want) {
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
