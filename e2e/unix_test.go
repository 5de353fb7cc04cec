package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// shortDir is a fresh directory with a short path (a socket path has at
// most 107 bytes), private to the test's user, removed at the end.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "u")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// unixEcho connects to the socket file path, sends msg and reads its echo.
func unixEcho(t *testing.T, path, msg string) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("connecting to %s: %v", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("reading the echo from %s: %v", path, err)
	}
	return string(buf)
}

// TestSocatRecipeOnUnixSockets: the README's socat recipe, a program that
// only speaks on the socket file DynaPM picks ($SOCKET), reached on a
// unix: listen and on a TCP one. The socket file is made with the
// recipe's mode and group; the first connection is held while socat
// starts; the app stops when idle and the next connection wakes it; the
// socket file goes with the app file.
func TestSocatRecipeOnUnixSockets(t *testing.T) {
	socat, err := exec.LookPath("socat")
	if err != nil {
		t.Skip("socat is not installed (apt-get install socat); the Unix socket recipe runs it")
	}
	apps, state, run := t.TempDir(), stateDir(t), shortDir(t)
	listen := filepath.Join(run, "echo.sock")
	tcp := testutil.FreeAddr(t)
	gid := os.Getegid()
	file := filepath.Join(apps, "echo.yaml")
	testutil.WriteFile(t, file, replaceAll(t, recipeBlocks(t, "socat on Unix sockets")[0],
		`listen: "unix:/run/dynapm-echo/echo.sock"`, fmt.Sprintf("listen: [%q, %q]", "unix:"+listen, tcp),
		"exec socat", "exec "+socat,
		`socket_group: "adm"`, fmt.Sprintf("socket_group: %q", strconv.Itoa(gid)),
		"idle_timeout: 10m", "idle_timeout: 300ms\nstop_timeout: 2s\nstart_timeout: 20s"))
	d := startDaemon(t, apps, "-state", state)

	fi, err := os.Lstat(listen)
	if err != nil {
		t.Fatalf("no socket file at the listen path: %v", err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Gid != uint32(gid) {
		t.Fatalf("socket file %v gid %d, want a socket of mode 0660 and gid %d", fi.Mode(), fi.Sys().(*syscall.Stat_t).Gid, gid)
	}
	for wake := range 2 {
		msg := "hello " + strconv.Itoa(wake)
		c, err := net.Dial("unix", listen)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		c.Write([]byte(msg))
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			t.Fatalf("wake %d: echo %q, %v", wake+1, buf, err)
		}
		// An open connection counts, and keeps the app up, as on TCP.
		a := statusOf(t, state, "echo")
		if want := "unix:" + filepath.Join(state, "sockets", "echo.sock"); a["upstream"] != want {
			t.Errorf("status upstream %v, want %s", a["upstream"], want)
		}
		if a["state"] != "ready" || a["connections"] != float64(1) {
			t.Errorf("wake %d: with a connection open, state %v, connections %v", wake+1, a["state"], a["connections"])
		}
		c.Close()
		waitState(t, state, "echo", "stopped")
	}
	// A TCP client reaches the same socket file.
	if got := testutil.EchoOnce(t, tcp, "over tcp"); got != "over tcp" {
		t.Fatalf("TCP echo %q", got)
	}
	d.waitLog(t, "app started", "app=echo", "upstream=unix:")

	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, reloadWait, func() bool {
		_, err := os.Lstat(listen)
		return os.IsNotExist(err)
	}, "the socket file %s outlived its app", listen)
}

// TestUnixListenToTestappOnAPort: a unix: listen in front of a program on
// $PORT, its connection in the access log as client=unix; stopping the daemon removes the socket file, and a daemon
// started after a killed one replaces the stale file it left.
func TestUnixListenToTestappOnAPort(t *testing.T) {
	apps, state, run := t.TempDir(), stateDir(t), shortDir(t)
	listen := filepath.Join(run, "web.sock")
	testutil.WriteFile(t, filepath.Join(apps, "web.yaml"), fmt.Sprintf(
		"listen: %q\ncommand: [%q]\nidle_timeout: 1h\nstart_timeout: 20s\nstop_timeout: 2s\naccess_log: true\n", "unix:"+listen, testutil.TestApp(t)))
	d := startDaemon(t, apps, "-state", state)
	if got := unixEcho(t, listen, "through a port"); got != "through a port" {
		t.Fatalf("echo %q", got)
	}
	// Logged and counted as a TCP connection is.
	d.waitLog(t, "msg=connection", "app=web", "client=unix", "bytes_in=14", "bytes_out=14", "end=closed")
	if a := statusOf(t, state, "web"); a["state"] != "ready" || a["connections"] != float64(0) {
		t.Errorf("after the connection: state %v, connections %v", a["state"], a["connections"])
	}
	// Killed: the file stays, stale.
	d.cmd.Process.Kill()
	<-d.done
	if fi, err := os.Lstat(listen); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("after a kill, want the stale socket file left: %v, %v", fi, err)
	}
	d = startDaemon(t, apps, "-state", state)
	if got := unixEcho(t, listen, "again"); got != "again" {
		t.Fatalf("echo after the restart %q", got)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
	if _, err := os.Lstat(listen); !os.IsNotExist(err) {
		t.Fatalf("the socket file outlived the daemon's stop: %v", err)
	}
}

// The attacks on a unix: listen path: a directory others may write to is
// refused (no file is made there), and a regular file or a symlink at the
// path is neither removed nor followed; the app is refused, naming why.
func TestUnixListenRefusesUntrustedPlaces(t *testing.T) {
	apps, state := t.TempDir(), stateDir(t)
	open := shortDir(t)
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	safe := shortDir(t)
	regular := filepath.Join(safe, "regular.sock")
	testutil.WriteFile(t, regular, "keep me")
	victim := filepath.Join(safe, "victim")
	testutil.WriteFile(t, victim, "keep me too")
	link := filepath.Join(safe, "link.sock")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"open": filepath.Join(open, "a.sock"), "regular": regular, "link": link} {
		testutil.WriteFile(t, filepath.Join(apps, name+".yaml"), fmt.Sprintf(
			"listen: %q\ncommand: [%q]\n", "unix:"+path, testutil.TestApp(t)))
	}
	d := startDaemon(t, apps, "-state", state)
	d.waitLog(t, "open.yaml", "directory of a unix: listen socket "+open)
	d.waitLog(t, "regular.yaml", "is a regular file, not a socket")
	d.waitLog(t, "link.yaml", "is a symlink, not a socket")
	if _, err := os.Lstat(filepath.Join(open, "a.sock")); !os.IsNotExist(err) {
		t.Errorf("a socket file was made in a world-writable directory: %v", err)
	}
	for _, p := range []string{regular, victim} {
		if b, err := os.ReadFile(p); err != nil || !strings.HasPrefix(string(b), "keep me") {
			t.Errorf("%s changed: %q, %v", p, b, err)
		}
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode().Type() != os.ModeSymlink {
		t.Errorf("the symlink was replaced: %v, %v", fi, err)
	}
}
