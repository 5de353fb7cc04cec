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

// rootShared is a fresh directory, mode 0755 and root's, out of the tests'
// private directories, with a copy of testapp: another user (nobody) can
// enter it and run the program.
func rootShared(t *testing.T) (dir, prog string) {
	t.Helper()
	dir = shortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(testutil.TestApp(t))
	if err != nil {
		t.Fatal(err)
	}
	prog = filepath.Join(dir, "testapp")
	if err := os.WriteFile(prog, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, prog
}

// The attack on a unix: upstream: in a directory anyone may write to
// (sticky, as /tmp), someone plants a symlink at the upstream's path to a
// socket root listens on (standing for /run/docker.sock). A root daemon
// refuses the app at load, whether it runs as root or as nobody, naming
// the file, the field and the fix, and no client reaches that socket; an
// app serving in a directory of its own user is served.
func TestUnixUpstreamPlantedSymlinkIsRefusedAtLoad(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the attack is on a daemon running as root")
	}
	base, prog := rootShared(t)
	victim := filepath.Join(base, "docker.sock")
	vl, err := net.Listen("unix", victim)
	if err != nil {
		t.Fatal(err)
	}
	defer vl.Close()
	go func() {
		for {
			c, err := vl.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "VICTIM")
			c.Close()
		}
	}()
	open, own := filepath.Join(base, "open"), filepath.Join(base, "own")
	for _, d := range []string{open, own} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(open, 0o1777); err != nil {
		t.Fatal(err)
	}
	testutil.ChownNobody(t, own)
	// Two apps may not share an upstream: one symlink for each.
	planted, planted2 := filepath.Join(open, "root.sock"), filepath.Join(open, "user.sock")
	for _, p := range []string{planted, planted2} {
		if err := os.Symlink(victim, p); err != nil {
			t.Fatal(err)
		}
	}
	apps, state := t.TempDir(), stateDir(t)
	rootAddr, userAddr, ownAddr := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	app := "listen: %q\nupstream: %q\ncommand: [%q, -listen, %q]\nstart_timeout: 20s\ndir: " + base + "\n"
	testutil.WriteFile(t, filepath.Join(apps, "asroot.yaml"), fmt.Sprintf(app, rootAddr, "unix:"+planted, prog, "unix:"+planted))
	testutil.WriteFile(t, filepath.Join(apps, "asuser.yaml"), fmt.Sprintf(app+"user: nobody\n", userAddr, "unix:"+planted2, prog, "unix:"+planted2))
	mine := filepath.Join(own, "app.sock")
	testutil.WriteFile(t, filepath.Join(apps, "own.yaml"), fmt.Sprintf(app+"user: nobody\n", ownAddr, "unix:"+mine, prog, "unix:"+mine))
	d := startDaemon(t, apps, "-state", state)
	for _, f := range []string{"asroot.yaml", "asuser.yaml"} {
		d.waitLog(t, f+": upstream: directory of the unix: upstream socket "+open+" is writable by group or others (mode 0777); fix it with: chmod go-w "+open)
	}
	if got := testutil.EchoOnce(t, ownAddr, "mine"); got != "mine" {
		t.Fatalf("the app in its own directory echoed %q", got)
	}
	for _, addr := range []string{rootAddr, userAddr} {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			continue // refused: nothing listens for the app
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		c.Close()
		if strings.Contains(string(b), "VICTIM") {
			t.Fatalf("a client of %s reached the planted socket", addr)
		}
	}
	code, out, _ := dynapm(t, "check", "-apps", apps, "-state", state)
	if code != 1 || !strings.Contains(out, "asroot.yaml: upstream: directory of the unix: upstream socket "+open) ||
		!strings.Contains(out, "asuser.yaml: upstream: directory of the unix: upstream socket "+open) || strings.Contains(out, "own.yaml") {
		t.Errorf("dynapm check: exit %d\n%s", code, out)
	}
}

// socket_user owns the socket file, as systemd's SocketUser= does: that
// user may change its mode; socket_mode is what it is made with.
func TestUnixSocketUserOwnsTheFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("socket_user chowns: the daemon must run as root")
	}
	base, prog := rootShared(t)
	listen := filepath.Join(base, "web.sock")
	apps, state := t.TempDir(), stateDir(t)
	testutil.WriteFile(t, filepath.Join(apps, "web.yaml"), fmt.Sprintf(
		"listen: %q\nsocket_user: nobody\nsocket_mode: \"0600\"\ncommand: [%q]\nstart_timeout: 20s\n", "unix:"+listen, prog))
	startDaemon(t, apps, "-state", state)
	testutil.Eventually(t, 20*time.Second, func() bool { _, err := os.Lstat(listen); return err == nil }, "no socket file at %s", listen)
	fi, err := os.Lstat(listen)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != testutil.Nobody || st.Gid != 0 || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket file: uid %d gid %d mode %v, want nobody's, root's group, 0600, a socket", st.Uid, st.Gid, fi.Mode())
	}
	chmod := exec.Command("chmod", "0660", listen)
	chmod.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: testutil.Nobody, Gid: testutil.Nobody}}
	if out, err := chmod.CombinedOutput(); err != nil {
		t.Fatalf("nobody, the socket_user, cannot chmod the file: %v\n%s", err, out)
	}
	if fi, err := os.Lstat(listen); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("after nobody's chmod: %v, %v", fi, err)
	}
	if got := unixEcho(t, listen, "hello"); got != "hello" {
		t.Fatalf("echo %q", got)
	}
}
