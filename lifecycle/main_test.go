package lifecycle

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

	"go.uber.org/goleak"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/spawner"
)

// Environment of the test binary re-executed as a stand-in daemon (see
// TestExecDaemonKilledLeavesNoProcess): the work directory and the testapp path.
const (
	daemonDirEnv = "DYNAPM_TEST_DAEMON"
	daemonAppEnv = "DYNAPM_TEST_APP"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == spawner.HelperArg {
		os.Exit(spawner.Main())
	}
	if dir := os.Getenv(daemonDirEnv); dir != "" {
		os.Exit(runTestDaemon(dir, os.Getenv(daemonAppEnv)))
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak (spawner %v): %v\n", testSpawner, err)
			code = 1
		}
	}
	if code == 0 && !testSpawner {
		if err := testutil.RerunSuite("=== lifecycle: the same tests with programs started through the spawner helper", spawnerEnv+"=1"); err != nil {
			fmt.Fprintf(os.Stderr, "suite with the spawner: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// spawnerEnv set runs the suite with every ExecDriver of the tests starting
// programs through a spawner helper (the daemon's way), as TestMain does
// after the suite passed without.
const spawnerEnv = "LIFECYCLE_TEST_SPAWNER"

var testSpawner = os.Getenv(spawnerEnv) != ""

// withTestSpawner gives d a spawner helper when the suite runs with one,
// and returns the function that closes it, to call after d.Close.
func withTestSpawner(d *ExecDriver) (closeSpawner func() error, err error) {
	if !testSpawner {
		return func() error { return nil }, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c, err := spawner.Start(exe)
	if err != nil {
		return nil, err
	}
	d.UseSpawner(c)
	return c.Close, nil
}

// runTestDaemon is the stand-in daemon: it starts testapp with a grandchild
// through an ExecDriver, prints "PIDS app grandchild reaper" and blocks until
// it is killed.
func runTestDaemon(dir, app string) int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	d := NewExecDriver(logger)
	if _, err := withTestSpawner(d); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log, err := os.Create(filepath.Join(dir, "app.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pidfile, gcfile := filepath.Join(dir, "app.pid"), filepath.Join(dir, "gc.pid")
	_, err = d.Start(context.Background(), StartRequest{
		Spec: &appfile.Spec{
			Name:    "daemon-test",
			Command: []string{app, "-mode", "hold", "-listen", "127.0.0.1:0", "-pidfile", pidfile, "-grandchild", gcfile},
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
	fmt.Printf("PIDS %d %d %d\n", appPid, gcPid, reaperPid)
	select {}
}

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
