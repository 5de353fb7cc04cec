package rawnet

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func listen(t *testing.T, addr string) (net.Listener, netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listening on %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, netip.MustParseAddrPort(ln.Addr().String())
}

func TestConnectToAListenerGivesAConnectedNonBlockingSocket(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, ap := listen(t, addr)
		fd, err := Connect(context.Background(), ap, time.Second)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := syscall.Write(fd, []byte("hi")); err != nil {
			t.Fatalf("%s: writing: %v", addr, err)
		}
		buf := make([]byte, 2)
		if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
			t.Fatalf("%s: read %q, %v", addr, buf, err)
		}
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil || fl&syscall.O_NONBLOCK == 0 {
			t.Errorf("%s: flags %#x (%v), want O_NONBLOCK", addr, fl, err)
		}
		fdfl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || fdfl&syscall.FD_CLOEXEC == 0 {
			t.Errorf("%s: descriptor flags %#x (%v), want FD_CLOEXEC", addr, fdfl, err)
		}
		syscall.Close(fd)
		c.Close()
	}
}

func TestConnectToAClosedPortIsRefused(t *testing.T) {
	ap := netip.MustParseAddrPort(testutil.FreeAddr(t))
	for _, timeout := range []time.Duration{0, time.Second} {
		fd, err := Connect(context.Background(), ap, timeout)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("timeout %v: fd %d, err %v, want ECONNREFUSED", timeout, fd, err)
		}
	}
}

// fullListener returns the address of a socket that listens with a
// backlog of one and never accepts, with its queue already full: a new
// connect gets no answer to its SYN.
func fullListener(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, ap := testutil.BoundSocket(t)
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	// Fill the queue: connects that complete until one does not.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		cfd, err := Connect(context.Background(), ap, 0)
		if err != nil {
			return ap
		}
		t.Cleanup(func() { syscall.Close(cfd) })
	}
	t.Skip("the accept queue never filled")
	return ap
}

func TestConnectToAFullQueueTimesOut(t *testing.T) {
	ap := fullListener(t)
	_, err := Connect(context.Background(), ap, 50*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err %v, want a deadline error", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("err %v is not a net.Error timeout", err)
	}
}

func TestConnectGivesUpWhenTheContextEnds(t *testing.T) {
	ap := fullListener(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Connect(ctx, ap, time.Minute)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Connect did not return after its context ended")
	}
}

// ConnectUnix connects to a socket file by what is at its path, never
// through a symlink there, and names what it found instead of a socket;
// a missing file and one nobody listens on keep their errors.
func TestConnectUnixFollowsNoSymlinkAtThePath(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fd, err := ConnectUnix(context.Background(), sock, 0)
	if err != nil {
		t.Fatalf("connect to the socket: %v", err)
	}
	syscall.Close(fd)
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(sock, link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "stale.sock")
	sfd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(sfd, &syscall.SockaddrUnix{Name: stale}); err != nil {
		t.Fatal(err)
	}
	syscall.Close(sfd)
	for _, c := range []struct {
		path string
		want error
		msg  string
	}{
		{link, syscall.ELOOP, link + " is a symlink, which DynaPM does not follow to a socket"},
		{file, syscall.ENOTSOCK, file + " is not a socket"},
		{filepath.Join(dir, "none"), syscall.ENOENT, "no such file"},
		{stale, syscall.ECONNREFUSED, "connect " + stale + ": connection refused"},
	} {
		fd, err := ConnectUnix(context.Background(), c.path, 0)
		if err == nil {
			syscall.Close(fd)
			t.Errorf("%s: connected", c.path)
			continue
		}
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %v saying %q", c.path, err, c.want, c.msg)
		}
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
