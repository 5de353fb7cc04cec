package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// waitExit waits (up to 30 s) for the daemon to exit and returns its code.
func waitExit(t *testing.T, d *runningDaemon, after string) int {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon did not exit after %s", after)
	}
	return d.cmd.ProcessState.ExitCode()
}

func TestDaemonSIGINTStopsAppsAndExitsZero(t *testing.T) {
	d, pid, gpid := startAppWithGrandchild(t)

	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, d, "SIGINT"); code != 0 {
		t.Fatalf("exit code after SIGINT = %d, want 0", code)
	}
	for _, p := range []int{pid, gpid} {
		if testutil.ProcessAlive(p) {
			t.Errorf("process %d outlived the daemon", p)
		}
	}
}

// The app never becomes ready and ignores SIGTERM, with a long
// stop_timeout: the daemon's shutdown is held up stopping it until the test
// kills it, which leaves time to look at the held connection and the listen
// port while the daemon still runs.
func TestDaemonSIGTERMClosesHeldConnectionsAndStopsListeningAtOnce(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	testutil.WriteFile(t, filepath.Join(apps, "slow.yaml"), fmt.Sprintf(
		"listen: %q\ncommand: [%q, \"-mode\", \"sleep\", \"-ignore-term\", \"-pidfile\", %q]\nstart_timeout: 5m\nstop_timeout: 5m\n",
		listen, testutil.TestApp(t), pidfile))
	d := startDaemon(t, apps)

	c, err := net.DialTimeout("tcp", listen, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "waiting for a slow start"); err != nil {
		t.Fatal(err)
	}
	pid := testutil.ReadPidFile(t, pidfile) // the wake spawned the app: the connection is held
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Closed by the shutdown, not by start_timeout (5m).
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("held connection after SIGTERM: read %d bytes, %v; want it closed", n, err)
	}
	testutil.Eventually(t, 15*time.Second, func() bool { return refused(listen) },
		"%s still accepts connections after SIGTERM", listen)
	select {
	case <-d.done:
		t.Fatal("daemon exited while its app was still being stopped")
	default:
	}

	// The app gives in: the shutdown completes.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, d, "SIGTERM"); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
}
