package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

// An app whose command names $SOCKET serves on a socket file DynaPM picks
// in its state directory: ready once a connect to it succeeds, shown as
// unix:/path in status, and a stale file from a killed run is replaced.
func TestPickedSocketIsTheUpstream(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("sock", "-listen", "unix:${SOCKET}")
	if !spec.PicksSocket() {
		t.Fatal("spec does not pick a socket")
	}
	want := SocketPath(h.cfg.StateDir, "sock")
	if want != filepath.Join(h.cfg.StateDir, "sockets", "sock.sock") {
		t.Fatalf("SocketPath = %q", want)
	}
	// A socket file a killed run left behind.
	if err := os.MkdirAll(filepath.Dir(want), 0o700); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: want}); err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)

	h.m.Apply([]*appfile.Spec{spec})
	up, release := h.wake("sock")
	defer release()
	if up.IsValid() {
		t.Errorf("Wake returned a port, %v, for an app served on a socket file", up)
	}
	st := h.status("sock")
	if len(st.Instances) != 1 || st.Instances[0].Upstream != "unix:"+want {
		t.Fatalf("status upstream %+v, want unix:%s", st.Instances, want)
	}
	c, err := net.Dial("unix", want)
	if err != nil {
		t.Fatalf("the program does not serve on $SOCKET: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q, %v", buf, err)
	}
}

// The readiness probe of a socket file hands its connection over with the
// lease, as the TCP probe does.
func TestUnixUpstreamProbeHandsItsConnectionOver(t *testing.T) {
	h := newHarness(t)
	path := filepath.Join(t.TempDir(), "up.sock")
	spec := h.spec("fixed", "-listen", "unix:"+path)
	spec.Upstream = "unix:" + path
	h.m.Apply([]*appfile.Spec{spec})
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	_, conn, release, err := h.m.WakeConn(ctx, "fixed")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if conn < 0 {
		t.Fatal("no connection handed over")
	}
	defer syscall.Close(conn)
	sa, err := syscall.Getpeername(conn)
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := sa.(*syscall.SockaddrUnix); !ok || u.Name != path {
		t.Fatalf("handed-over connection is to %#v, want %s", sa, path)
	}
}

// What is at the picked path and is not a socket is left alone.
func TestPreparePickedSocketLeavesOtherFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sockets", "x.sock")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := preparePickedSocket(path); err == nil {
		t.Fatal("no error for a regular file at the picked path")
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "keep" {
		t.Fatalf("file changed: %q, %v", b, err)
	}
}

// A socket someone listens on at the picked path (a program of a previous
// run still serving) is left alone; a stale one is replaced.
func TestPreparePickedSocketReplacesOnlyAStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sockets", "x.sock")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := preparePickedSocket(path); err == nil || !strings.Contains(err.Error(), "another program listens on this socket") {
		t.Fatalf("a live socket at the picked path: %v, want it left alone", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the live socket was removed: %v", err)
	}
	c.Close()
	ln.Close()
	if err := preparePickedSocket(path); err != nil {
		t.Fatalf("a stale socket at the picked path: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the stale socket is still there: %v", err)
	}
}

// ${SOCKET} expands in a ready.command argv list as ${PORT} does: here
// the start is ready once the program's socket file exists.
func TestReadyCommandSeesTheSocket(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("sock", "-delay", "50ms", "-listen", "unix:${SOCKET}")
	spec.Ready = appfile.Ready{Command: []string{"/usr/bin/test", "-S", "${SOCKET}"}}
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("sock")
	defer release()
	if _, err := net.Dial("unix", SocketPath(h.cfg.StateDir, "sock")); err != nil {
		t.Fatalf("ready before the socket file serves: %v", err)
	}
}

// A socket file whose listener is not the app's user does not make the
// start ready: the start times out naming who listens there.
func TestSocketOfAnotherUserIsNotReady(t *testing.T) {
	other := uint32(os.Geteuid()) + 1
	h := newHarness(t, func(c *Config) {
		c.SocketOwner = func(*appfile.Spec) (uint32, error) { return other, nil }
	})
	spec := h.spec("sock", "-listen", "unix:${SOCKET}")
	spec.StartTimeout = 300 * time.Millisecond
	h.m.Apply([]*appfile.Spec{spec})
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	_, release, err := h.m.Wake(ctx, "sock")
	if err == nil {
		release()
		t.Fatal("ready on a socket another uid listens on")
	}
	want := fmt.Sprintf("connecting to %s: the socket's listener is not the app's user: uid %d listens there, the app runs as uid %d", SocketPath(h.cfg.StateDir, "sock"), os.Geteuid(), other)
	// The start's failure, logged once its probing gives up, says why.
	testutil.Eventually(t, mgrWait, func() bool { return h.logLine(want) != "" },
		"wake error %v; no log line with %q:\n%s", err, want, h.logs.String())
}
