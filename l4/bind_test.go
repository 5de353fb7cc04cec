package l4

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// acceptQueue returns how many connections wait in the kernel's accept
// queue of the listener of addr (tcpi_unacked of a listening socket).
func acceptQueue(t *testing.T, s *Server, addr string) int {
	t.Helper()
	s.mu.Lock()
	l := s.listeners[addr]
	s.mu.Unlock()
	if l == nil {
		t.Fatalf("no listener for %s", addr)
	}
	var (
		info *unix.TCPInfo
		err  error
	)
	getInfo := func(fd uintptr) {
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}
	// A listener that is only bound still holds its descriptor (the raw
	// duplicate on the event loop's path, else Go's socket).
	if l.fd >= 0 {
		getInfo(uintptr(l.fd))
	} else {
		rc, rerr := l.ln.(*net.TCPListener).SyscallConn()
		if rerr != nil {
			t.Fatal(rerr)
		}
		if rerr := rc.Control(getInfo); rerr != nil {
			t.Fatal(rerr)
		}
	}
	if err != nil {
		t.Fatalf("getsockopt TCP_INFO: %v", err)
	}
	return int(info.Unacked)
}

func TestBindQueuesConnectionsUntilApplyAccepts(t *testing.T) {
	w := newTestWaker(t) // knows no app yet, as a manager before its Apply
	s, logs := newServer(t, w)
	table := map[string][]Route{"127.0.0.1:0": {{App: "late"}}}
	if errs := s.Bind(table); errs != nil {
		t.Fatal(errs)
	}
	addr := s.Addr("127.0.0.1:0")
	if addr == nil {
		t.Fatal("Addr of a bound address is nil")
	}
	c := dialTCP(t, addr.String())
	if _, err := c.Write([]byte("sent before the app was known|")); err != nil {
		t.Fatal(err)
	}
	// The handshake is done and the connection waits in the kernel, not
	// in an accept loop that would ask the Waker about an unknown app.
	waitFor(t, "connection queued in the kernel", func() bool { return acceptQueue(t, s, "127.0.0.1:0") == 1 })
	if n := w.wakes.Load(); n != 0 {
		t.Fatalf("%d wakes before Apply", n)
	}

	w.add("late", &testApp{start: func() *backend { return startBackend(t, echo) }})
	if errs := s.Apply(table); errs != nil {
		t.Fatal(errs)
	}
	if got := s.Addr("127.0.0.1:0"); got.String() != addr.String() {
		t.Fatalf("Apply rebound the address: %s, was %s", got, addr)
	}
	want := "sent before the app was known|"
	buf := make([]byte, len(want))
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != want {
		t.Fatalf("early bytes came back as %q (%v), want %q", buf, err, want)
	}
	roundTrip(t, c, "and after")
	if l := logs.String(); strings.Contains(l, "connection closed unserved") {
		t.Errorf("the Waker was asked before it knew the app:\n%s", l)
	}
}

func TestApplyClosesAddressesBoundButLeftOut(t *testing.T) {
	s, _ := newServer(t, twoApps(t))
	if errs := s.Bind(map[string][]Route{"127.0.0.1:0": {{App: "aaa"}}}); errs != nil {
		t.Fatal(errs)
	}
	addr := s.Addr("127.0.0.1:0").String()
	if errs := s.Apply(nil); errs != nil {
		t.Fatal(errs)
	}
	if s.Addr("127.0.0.1:0") != nil {
		t.Error("an address bound but not applied is still listening")
	}
	if nc, err := net.Dial("tcp", addr); err == nil {
		nc.Close()
		t.Error("a bound address left out of Apply still accepts connections")
	}
}

func TestBindKeepsRoutesOfListeningAddresses(t *testing.T) {
	s, _ := newServer(t, twoApps(t))
	addr := listenOne(t, s, "aaa")
	if errs := s.Bind(map[string][]Route{"127.0.0.1:0": {{App: "bbb"}}}); errs != nil {
		t.Fatal(errs)
	}
	if got := readName(t, dialTCP(t, addr), 3); got != "aaa" {
		t.Errorf("after Bind routed to %q, want aaa until Apply", got)
	}
}
