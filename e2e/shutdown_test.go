package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// exitWithin waits for d to exit and returns how long that took since
// from, failing the test after limit.
func exitWithin(t *testing.T, d *runningDaemon, from time.Time, limit time.Duration) time.Duration {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(limit):
		t.Fatalf("daemon still running %v after the signal:\n%s", limit, d.out)
	}
	return time.Since(from)
}

// SIGTERM with idle clients connected: the apps stop, the clients'
// connections are closed once their app is gone, and the daemon exits 0
// within the longest stop_timeout plus a second.
func TestSIGTERMWithIdleClientsConnectedExitsZeroInTime(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	testutil.WriteFile(t, filepath.Join(apps, "echo.yaml"), echoAppOn(t, []string{listen}, pidfile, ""))
	d := startDaemon(t, apps)
	var clients []net.Conn
	for i := range 3 {
		c, err := net.DialTimeout("tcp", listen, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		msg := fmt.Sprintf("hello %d\n", i)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Read(buf); err != nil || string(buf) != msg {
			t.Fatalf("echo = %q, %v", buf, err)
		}
		clients = append(clients, c) // and left open, idle
	}
	const stopTimeout = 2 * time.Second // echoAppOn's
	began := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	took := exitWithin(t, d, began, 20*time.Second)
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM with idle clients:\n%s", code, d.out)
	}
	if took > stopTimeout+time.Second {
		t.Fatalf("shutdown took %v with idle clients connected, want at most stop_timeout (%v) + 1s", took, stopTimeout)
	}
	for i, c := range clients {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("client %d still open after the shutdown (read %d bytes)", i, n)
		}
	}
}

// A second SIGINT while apps stop kills them at once: the daemon does not
// wait out a long stop_timeout.
func TestSecondSIGINTStopsAtOnce(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	testutil.WriteFile(t, filepath.Join(apps, "stubborn.yaml"),
		strings.Replace(testutil.EchoApp(t, listen, pidfile, `, "-ignore-term"`), "stop_timeout: 2s", "stop_timeout: 60s", 1))
	d := startDaemon(t, apps)
	testutil.EchoOnce(t, listen, "x")
	pid := testutil.ReadPidFile(t, pidfile)
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	d.waitLog(t, "dynapm shutting down")
	began := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if took := exitWithin(t, d, began, 20*time.Second); took > 5*time.Second {
		t.Fatalf("second SIGINT: the daemon took %v to exit", took)
	}
	if !strings.Contains(d.out.String(), "second signal: killing every app now") {
		t.Errorf("the log does not say why the apps were killed:\n%s", d.out)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return !testutil.ProcessAlive(pid) },
		"app %d outlived the daemon's second SIGINT", pid)
}

// dynapm stop says when a stop ended in a kill, and when there was nothing
// to stop.
func TestDynapmStopSaysWhenItKilledAndWhenNothingRan(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	listen := testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	testutil.WriteFile(t, filepath.Join(apps, "stubborn.yaml"),
		strings.Replace(testutil.EchoApp(t, listen, pidfile, `, "-ignore-term"`), "stop_timeout: 2s", "stop_timeout: 300ms", 1))
	startDaemon(t, apps, "-state", state)
	testutil.EchoOnce(t, listen, "x")
	code, out, errOut := dynapm(t, "stop", "stubborn", "-state", state)
	if code != 0 || !strings.HasPrefix(out, "stubborn: stopped in 0.") || !strings.HasSuffix(out, "s: killed after stop_timeout\n") {
		t.Fatalf("dynapm stop of an app that ignores SIGTERM: %d %q %q", code, out, errOut)
	}
	code, out, errOut = dynapm(t, "stop", "stubborn", "-state", state)
	if code != 0 || out != "stubborn was not running\n" {
		t.Fatalf("dynapm stop of a stopped app: %d %q %q", code, out, errOut)
	}
}
