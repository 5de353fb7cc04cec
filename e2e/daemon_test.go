package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// The daemon's core promises: a wake, an idle stop, a bad file beside good
// ones, nothing left running after SIGTERM or SIGKILL, a herd of first
// connections served by one start.

func TestDaemonWakesServesAndStopsWhenIdle(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	testutil.WriteFile(t, filepath.Join(apps, "echo.yaml"), testutil.EchoApp(t, listen, pidfile, ""))
	d := startDaemon(t, apps)

	if got := testutil.EchoOnce(t, listen, "hello through dynapm"); got != "hello through dynapm" {
		t.Fatalf("echo reply = %q", got)
	}
	pid := testutil.ReadPidFile(t, pidfile)
	testutil.Eventually(t, 20*time.Second, func() bool { return !testutil.ProcessAlive(pid) },
		"app pid %d still running after its idle timeout", pid)
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(d.out.String(), "idle") },
		"no idle stop logged")
	if err := os.Remove(pidfile); err != nil {
		t.Fatal(err)
	}
	if got := testutil.EchoOnce(t, listen, "again"); got != "again" {
		t.Fatalf("echo reply after idle stop = %q", got)
	}
	if pid2 := testutil.ReadPidFile(t, pidfile); pid2 == pid {
		t.Fatalf("second wake reused pid %d", pid)
	}
}

func TestDaemonServesGoodAppsDespiteABadFile(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "good.yaml"), testutil.EchoApp(t, listen, filepath.Join(t.TempDir(), "pid"), ""))
	testutil.WriteFile(t, filepath.Join(apps, "bad.yaml"), "listen: \"127.0.0.1:1\"\ncommand: [\"true\"]\nidle_timeout: soon\n")
	d := startDaemon(t, apps)
	if got := testutil.EchoOnce(t, listen, "ok"); got != "ok" {
		t.Fatalf("good app reply = %q", got)
	}
	out := d.out.String()
	if !strings.Contains(out, "bad.yaml") || !strings.Contains(out, "idle_timeout") {
		t.Fatalf("daemon log does not name the bad file and field:\n%s", out)
	}
}

func TestDaemonSIGTERMStopsAppsAndExitsZero(t *testing.T) {
	d, pid, gpid := startAppWithGrandchild(t)

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not exit after SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	for _, p := range []int{pid, gpid} {
		if testutil.ProcessAlive(p) {
			t.Errorf("process %d outlived the daemon", p)
		}
	}
}

func TestDaemonSIGKILLLeavesNoAppProcess(t *testing.T) {
	d, pid, gpid := startAppWithGrandchild(t)

	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.done
	testutil.Eventually(t, 10*time.Second, func() bool {
		return !testutil.ProcessAlive(pid) && !testutil.ProcessAlive(gpid)
	}, "app %d or grandchild %d outlived a SIGKILLed daemon", pid, gpid)
}

func TestPersistentAppStartsWithTheDaemon(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	testutil.WriteFile(t, filepath.Join(apps, "db.yaml"), testutil.EchoApp(t, listen, pidfile, "")+"mode: persistent\n")
	startDaemon(t, apps)
	pid := testutil.ReadPidFile(t, pidfile)
	if !testutil.ProcessAlive(pid) {
		t.Fatalf("persistent app %d not running", pid)
	}
}

func TestDaemonServesAHerdOfFirstConnectionsWithOneSpawn(t *testing.T) {
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	// A backlog of 5, as some servers have: releasing every held
	// connection at once must not end in SYN retransmits.
	testutil.WriteFile(t, filepath.Join(apps, "herd.yaml"),
		testutil.EchoApp(t, listen, pidfile, ", \"-backlog\", \"5\", \"-delay\", \"200ms\"")+"max_pending: 500\n")
	d := startDaemon(t, apps)

	const clients = 200
	replies := make(chan string, clients)
	for i := 0; i < clients; i++ {
		go func() {
			c, err := net.DialTimeout("tcp", listen, 10*time.Second)
			if err != nil {
				replies <- err.Error()
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			msg := fmt.Sprintf("client %d", i)
			if _, err := io.WriteString(c, msg); err != nil {
				replies <- err.Error()
				return
			}
			_ = c.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil {
				replies <- err.Error()
				return
			}
			if string(got) != msg {
				replies <- fmt.Sprintf("client %d got %q", i, got)
				return
			}
			replies <- ""
		}()
	}
	for i := 0; i < clients; i++ {
		if r := <-replies; r != "" {
			t.Errorf("client failed: %s", r)
		}
	}
	if n := startsAfterServed(t, d); n != 1 {
		t.Fatalf("%d starts logged for %d simultaneous first connections, want 1", n, clients)
	}
}
