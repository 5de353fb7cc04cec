package execdriver

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/exectest"
	"github.com/dynapm/dynapm/lifecycle"
)

// Environment of the test binary re-executed as a stand-in daemon (see
// TestExecDaemonKilledLeavesNoProcess): the work directory and the testapp path.
const (
	daemonDirEnv = "DYNAPM_TEST_DAEMON"
	daemonAppEnv = "DYNAPM_TEST_APP"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(daemonDirEnv); dir != "" {
		os.Exit(runTestDaemon(dir, os.Getenv(daemonAppEnv)))
	}
	if rounds := os.Getenv(floodEnv); rounds != "" {
		os.Exit(runFlood(rounds))
	}
	if dir := os.Getenv(noPtraceEnv); dir != "" {
		os.Exit(runNoPtrace(dir))
	}
	os.Exit(exectest.Main(m, "driver/exec", exectest.Cgroup, exectest.ProcessGroup))
}

// runTestDaemon is the stand-in daemon: it starts testapp with a grandchild
// through a Driver, prints "PIDS app grandchild reaper" and blocks until
// it is killed.
func runTestDaemon(dir, app string) int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	d := New(logger)
	if _, err := exectest.UseSpawner(d); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The subtree stays: the test removes it once the reaper emptied it.
	if _, err := exectest.Contain(d, standInSubtree(os.Getpid())); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log, err := os.Create(filepath.Join(dir, "app.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pidfile, gcfile, escfile := filepath.Join(dir, "app.pid"), filepath.Join(dir, "gc.pid"), filepath.Join(dir, "escaped.pid")
	command := []string{app, "-mode", "hold", "-listen", "127.0.0.1:0", "-pidfile", pidfile, "-grandchild", gcfile}
	if d.Containment() == ContainCgroup {
		// Only a cgroup holds an orphan that left the session once the
		// daemon is dead; without, the next daemon finds it by its record.
		command = append(command, "-escape", escfile)
	}
	_, err = d.Start(context.Background(), lifecycle.StartRequest{
		Spec: &appfile.Spec{
			Name:    "daemon-test",
			Command: command,
			Dir:     dir,
		},
		Env: os.Environ(),
		Log: log,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	appPid, gcPid := waitPidFile(pidfile), waitPidFile(gcfile)
	if appPid == 0 || gcPid == 0 {
		fmt.Fprintln(os.Stderr, "pid files not written")
		return 1
	}
	d.mu.Lock()
	reaperPid := d.reaper.cmd.Process.Pid
	d.mu.Unlock()
	pids := fmt.Sprintf("PIDS %d %d %d", appPid, gcPid, reaperPid)
	if d.Containment() == ContainCgroup {
		escPid := waitPidFile(escfile)
		if escPid == 0 {
			fmt.Fprintln(os.Stderr, "escaped pid file not written")
			return 1
		}
		pids += fmt.Sprintf(" %d", escPid)
	}
	fmt.Println(pids)
	select {}
}

// standInSubtree is the cgroup subtree of the stand-in daemon of pid.
func standInSubtree(pid int) string { return fmt.Sprintf("dynapm-test-standin-%d", pid) }

// waitPidFile polls for a pid file for up to 10 s (no testing.TB here).
func waitPidFile(path string) int {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return pid
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0
}
