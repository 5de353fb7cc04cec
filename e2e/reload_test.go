package e2e

import (
	"bufio"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// Hot reload of apps.d, end to end: the daemon binary, real files, real
// listeners and real app processes.

// openConn is a connection kept open across reloads, echoing a line at a time.
type openConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialOpen(t *testing.T, addr string) *openConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &openConn{c: c, r: bufio.NewReader(c)}
}

// echo sends one line through the open connection and checks the echo.
func (o *openConn) echo(t *testing.T, line string) {
	t.Helper()
	_ = o.c.SetDeadline(time.Now().Add(reloadWait))
	if _, err := io.WriteString(o.c, line+"\n"); err != nil {
		t.Fatalf("writing through the open connection: %v", err)
	}
	got, err := o.r.ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("echo through the open connection = %q, %v; want %q", got, err, line)
	}
}

func TestReloadNewFileListensSoonAfterItIsWritten(t *testing.T) {
	t.Parallel()
	apps := t.TempDir()
	startDaemon(t, apps)
	listen := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "new.yaml"), testutil.EchoApp(t, listen, filepath.Join(t.TempDir(), "pid"), ""))
	testutil.Eventually(t, reloadWait, func() bool { return tryEcho(listen, "new") }, "new app on %s not served", listen)
}

func TestReloadRemovedFileClosesListenerAndStopsApp(t *testing.T) {
	t.Parallel()
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	testutil.WriteFile(t, filepath.Join(apps, "gone.yaml"), echoAppOn(t, []string{listen}, pidfile, ""))
	d := startDaemon(t, apps)
	if got := testutil.EchoOnce(t, listen, "x"); got != "x" {
		t.Fatalf("%s: echo = %q", "app not served before removal", got)
	}
	pid := testutil.ReadPidFile(t, pidfile)
	if err := os.Remove(filepath.Join(apps, "gone.yaml")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, reloadWait, func() bool { return refused(listen) && !testutil.ProcessAlive(pid) },
		"after removal: listener %s still open or app %d still running", listen, pid)
	d.waitLog(t, "app stopped", "app=gone", "reason=removed")
}

func TestReloadChangedListenKeepsUnchangedAddressAndItsOpenConnection(t *testing.T) {
	t.Parallel()
	apps := t.TempDir()
	kept, dropped, added := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	path := filepath.Join(apps, "web.yaml")
	testutil.WriteFile(t, path, echoAppOn(t, []string{kept, dropped}, pidfile, ""))
	startDaemon(t, apps)
	conn := dialOpen(t, kept)
	conn.echo(t, "before")
	pid := testutil.ReadPidFile(t, pidfile)

	testutil.WriteFile(t, path, echoAppOn(t, []string{kept, added}, pidfile, ""))
	testutil.Eventually(t, reloadWait, func() bool { return tryEcho(added, "added") }, "new address %s not served", added)
	testutil.Eventually(t, reloadWait, func() bool { return refused(dropped) }, "dropped address %s still listening", dropped)
	conn.echo(t, "during")
	conn.echo(t, "after")
	if got := testutil.EchoOnce(t, kept, "kept"); got != "kept" {
		t.Fatalf("%s: echo = %q", "kept address %s no longer accepts", got)
	}
	if now := testutil.ReadPidFile(t, pidfile); now != pid || !testutil.ProcessAlive(pid) {
		t.Fatalf("a listen change restarted the app: pid %d, was %d", now, pid)
	}
}

func TestReloadChangedCommandRestartsAndConnectionDuringRestartIsServedByNewProcess(t *testing.T) {
	t.Parallel()
	apps := t.TempDir()
	listen := testutil.FreeAddr(t)
	oldPidfile, newPidfile := filepath.Join(t.TempDir(), "old"), filepath.Join(t.TempDir(), "new")
	path := filepath.Join(apps, "web.yaml")
	testutil.WriteFile(t, path, echoAppOn(t, []string{listen}, oldPidfile, ""))
	d := startDaemon(t, apps)
	if got := testutil.EchoOnce(t, listen, "old"); got != "old" {
		t.Fatalf("%s: echo = %q", "app not served before the edit", got)
	}
	oldPid := testutil.ReadPidFile(t, oldPidfile)

	// The new command starts slowly, so that a connection made as soon as
	// the restart is logged arrives while it is under way.
	testutil.WriteFile(t, path, echoAppOn(t, []string{listen}, newPidfile, `, "-delay", "300ms"`))
	d.waitLog(t, "restarting app", "app=web")
	if got := testutil.EchoOnce(t, listen, "during restart"); got != "during restart" {
		t.Fatalf("echo during the restart = %q", got)
	}
	newPid := testutil.ReadPidFile(t, newPidfile)
	if newPid == oldPid || !testutil.ProcessAlive(newPid) {
		t.Fatalf("served by pid %d, old pid %d", newPid, oldPid)
	}
	testutil.Eventually(t, reloadWait, func() bool { return !testutil.ProcessAlive(oldPid) }, "old process %d still running", oldPid)
	d.waitLog(t, "app stopped", "app=web", "reason=reload")
}

func TestReloadUnchangedAppKeepsItsConnectionWhileAnotherFileIsEdited(t *testing.T) {
	t.Parallel()
	apps := t.TempDir()
	quiet, busy, busy2 := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	quietPid := filepath.Join(t.TempDir(), "quiet")
	testutil.WriteFile(t, filepath.Join(apps, "quiet.yaml"), echoAppOn(t, []string{quiet}, quietPid, ""))
	busyPath := filepath.Join(apps, "busy.yaml")
	testutil.WriteFile(t, busyPath, echoAppOn(t, []string{busy}, filepath.Join(t.TempDir(), "busy"), ""))
	startDaemon(t, apps)
	conn := dialOpen(t, quiet)
	conn.echo(t, "before")
	pid := testutil.ReadPidFile(t, quietPid)

	// A command change restarts busy; a listen change moves it.
	testutil.WriteFile(t, busyPath, echoAppOn(t, []string{busy2}, filepath.Join(t.TempDir(), "busy2"), `, "-delay", "1ms"`))
	testutil.Eventually(t, reloadWait, func() bool { return tryEcho(busy2, "moved") }, "edited app not served on %s", busy2)
	conn.echo(t, "after")
	if now := testutil.ReadPidFile(t, quietPid); now != pid || !testutil.ProcessAlive(pid) {
		t.Fatalf("the unchanged app was restarted: pid %d, was %d", now, pid)
	}
}

func TestReloadInvalidEditIsLoggedAndLastGoodVersionKeepsServing(t *testing.T) {
	t.Parallel()
	apps := t.TempDir()
	listen, next := testutil.FreeAddr(t), testutil.FreeAddr(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	path := filepath.Join(apps, "web.yaml")
	good := echoAppOn(t, []string{listen}, pidfile, "")
	testutil.WriteFile(t, path, good)
	d := startDaemon(t, apps)
	conn := dialOpen(t, listen)
	conn.echo(t, "before")

	testutil.WriteFile(t, path, strings.Replace(good, "idle_timeout: 1h", "idle_timeout: soon", 1))
	d.waitLog(t, "web.yaml", "idle_timeout", "last good")
	conn.echo(t, "still")
	if got := testutil.EchoOnce(t, listen, "fresh"); got != "fresh" {
		t.Fatalf("%s: echo = %q", "last good version no longer accepts", got)
	}
	// A later valid save applies.
	testutil.WriteFile(t, path, echoAppOn(t, []string{next}, pidfile, ""))
	testutil.Eventually(t, reloadWait, func() bool { return tryEcho(next, "fixed") }, "fixed file not applied")
}

func TestReloadSIGHUPRescansChangesWithoutEvents(t *testing.T) {
	t.Parallel()
	apps, elsewhere := t.TempDir(), t.TempDir()
	first, second := testutil.FreeAddr(t), testutil.FreeAddr(t)
	target := filepath.Join(elsewhere, "web.yaml")
	pidfile := filepath.Join(t.TempDir(), "pid")
	testutil.WriteFile(t, target, echoAppOn(t, []string{first}, pidfile, ""))
	if err := os.Symlink(target, filepath.Join(apps, "web.yaml")); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, apps)
	if got := testutil.EchoOnce(t, first, "first"); got != "first" {
		t.Fatalf("%s: echo = %q", "app not served", got)
	}
	// Editing the symlink's target makes no event in apps.d.
	testutil.WriteFile(t, target, echoAppOn(t, []string{second}, pidfile, ""))
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, reloadWait, func() bool { return tryEcho(second, "second") }, "SIGHUP did not apply the change")
	d.waitLog(t, "rescanning apps dir")
	select {
	case <-d.done:
		t.Fatal("daemon exited on SIGHUP")
	default:
	}
}

func TestReloadListenAddressTakenElsewhereIsReportedAndRetried(t *testing.T) {
	t.Parallel()
	apps := t.TempDir()
	other := testutil.FreeAddr(t)
	testutil.WriteFile(t, filepath.Join(apps, "other.yaml"), echoAppOn(t, []string{other}, filepath.Join(t.TempDir(), "pid"), ""))
	d := startDaemon(t, apps)

	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	taken := squatter.Addr().String()
	testutil.WriteFile(t, filepath.Join(apps, "web.yaml"), echoAppOn(t, []string{taken}, filepath.Join(t.TempDir(), "pid2"), ""))
	d.waitLog(t, "web.yaml", "listen[0]", taken+" is already in use by pid "+strconv.Itoa(os.Getpid()))
	if got := testutil.EchoOnce(t, other, "still"); got != "still" {
		t.Fatalf("%s: echo = %q", "the daemon stopped serving other apps", got)
	}
	select {
	case <-d.done:
		t.Fatal("daemon exited because of a taken address")
	default:
	}
	// Once the address is free, the app is put in force without an edit.
	squatter.Close()
	testutil.Eventually(t, reloadWait, func() bool { return tryEcho(taken, "freed") }, "app not served once %s was freed", taken)
}
