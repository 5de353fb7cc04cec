package lifecycle

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

// testSockets hands out the test's own listening sockets, as l4.Server
// hands out its.
type testSockets map[string]*net.TCPListener

func (s testSockets) ListenFiles(addrs []string) ([]*os.File, error) {
	var files []*os.File
	for _, a := range addrs {
		f, err := s[a].File()
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// socketHarness is a harness whose Manager gets its handoff sockets from
// two listeners of the test, and a spec for testapp serving them.
func socketHarness(t *testing.T, args ...string) (*harness, *appfile.Spec) {
	t.Helper()
	socks := testSockets{}
	var listen []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		socks[ln.Addr().String()] = ln.(*net.TCPListener)
		listen = append(listen, ln.Addr().String())
	}
	h := newHarness(t, func(c *Config) { c.Sockets = socks })
	spec := h.spec("web", append([]string{"-listen-fds", "-hello"}, args...)...)
	spec.Listen, spec.Handoff = listen, appfile.HandoffSocket
	return h, spec
}

// greeted connects to addr and returns the connection and the pid that
// greeted it.
func greeted(t *testing.T, addr string) (net.Conn, int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, mgrWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(mgrWait))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("greeting: %v (%q)", err, line)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "testapp pid=")))
	return c, pid
}

func TestHandoffPassesTheSocketsAndCountsConnectionsFromTheKernel(t *testing.T) {
	h, spec := socketHarness(t)
	spec.IdleTimeout = 100 * time.Millisecond
	h.m.Apply([]*appfile.Spec{spec})
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	gone, err := h.m.Handoff(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	st := h.status("web")
	first, pid := greeted(t, spec.Listen[1])
	if pid != st.Pid || st.Handoff != appfile.HandoffSocket {
		t.Fatalf("greeted by pid %d; status %s handoff %q", pid, fmtStatus(st), st.Handoff)
	}
	second, other := greeted(t, spec.Listen[0])
	if other != pid {
		t.Fatalf("the first address was served by pid %d, not %d", other, pid)
	}
	if n := h.status("web").Connections; n != 2 {
		t.Errorf("status counts %d connections, want the kernel's 2", n)
	}
	// An observation window of many idle timeouts: the open connections,
	// counted at each idle check, keep the app up.
	<-time.After(5 * spec.IdleTimeout)
	if st := h.status("web"); st.State != Ready || st.Pid != pid {
		t.Fatalf("with connections open: %s", fmtStatus(st))
	}
	first.Close()
	second.Close()
	h.waitState("web", Stopped)
	h.waitLog(`msg="app stopped"`, "app=web", "reason=idle")
	select {
	case <-gone:
	case <-time.After(mgrWait):
		t.Fatal("Handoff's channel still open after the stop")
	}
	if testutil.ProcessAlive(pid) {
		t.Fatalf("pid %d alive after the idle stop", pid)
	}
}

func TestHandoffProgramExitingZeroIsAStop(t *testing.T) {
	h, spec := socketHarness(t, "-exit-idle", "50ms")
	h.m.Apply([]*appfile.Spec{spec})
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	gone, err := h.m.Handoff(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-gone:
	case <-time.After(mgrWait):
		t.Fatal("the program did not exit by itself")
	}
	st := h.waitState("web", Stopped)
	h.waitLog(`msg="app stopped"`, "app=web", "reason=exited")
	if st.LastError != "" || h.logLine(`msg="app exited"`) != "" {
		t.Fatalf("an exit of its own was taken for a crash: %s", fmtStatus(st))
	}
	// Not backing off: the next hand-off starts it at once.
	if _, err := h.m.Handoff(ctx, "web"); err != nil {
		t.Fatal(err)
	}
}

func TestInetdRunsTheProgramOnTheConnection(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("sh")
	spec.Command = []string{"/bin/sh", "-c", `echo "$LISTEN_FDS $LISTEN_FDNAMES"; read l; echo "got $l" >&3`}
	spec.Handoff = appfile.HandoffInetd
	h.m.Apply([]*appfile.Spec{spec})
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours := os.NewFile(uintptr(fds[0]), "client")
	defer ours.Close()
	conn := os.NewFile(uintptr(fds[1]), "connection")
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	gone, err := h.m.Inetd(ctx, "sh", conn)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(ours)
	if line, err := r.ReadString('\n'); line != "1 connection\n" {
		t.Fatalf("first line %q, %v: want LISTEN_FDS 1 and LISTEN_FDNAMES connection", line, err)
	}
	if st := h.status("sh"); st.State != Ready || st.Connections != 1 || len(st.Instances) != 1 || st.Pid == 0 {
		t.Errorf("while it runs: %s, %d instances", fmtStatus(st), len(st.Instances))
	}
	fmt.Fprintln(ours, "hi")
	if line, err := r.ReadString('\n'); line != "got hi\n" {
		t.Fatalf("fd 3 answered %q, %v", line, err)
	}
	select {
	case <-gone:
	case <-time.After(mgrWait):
		t.Fatal("the program's channel still open after it ended")
	}
	if st := h.status("sh"); st.State != Stopped || st.Connections != 0 {
		t.Errorf("after it ended: %s", fmtStatus(st))
	}
}
