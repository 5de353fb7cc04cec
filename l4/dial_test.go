package l4

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// greetThenEcho speaks first, as many servers do: a proxy that believes it
// is connected while the program's accept queue dropped its handshake would
// wait for a retransmission to get this greeting.
func greetThenEcho(c *net.TCPConn) {
	if _, err := c.Write([]byte("hi")); err != nil {
		return
	}
	echo(c)
}

// burstTimes holds n connections to an app whose program has a listen
// backlog of 5, releases them all at once and returns how long each took
// from the release to its greeting.
func burstTimes(t *testing.T, s *Server, w *testWaker, n int) []time.Duration {
	t.Helper()
	app := w.add("tiny", &testApp{gate: make(chan struct{}), start: func() *backend {
		return startTinyBacklogBackend(t, greetThenEcho)
	}})
	addr := listenOne(t, s, "tiny")
	conns := make([]*net.TCPConn, n)
	for i := range conns {
		conns[i] = dialTCP(t, addr)
	}
	waitFor(t, "every connection held", func() bool { return w.waiting.Load() == int64(n) })
	times := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	close(app.gate)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetDeadline(time.Now().Add(15 * time.Second))
			buf := make([]byte, 2)
			if _, err := io.ReadFull(c, buf); err != nil {
				errs[i] = err
				return
			}
			times[i] = time.Since(start)
			c.Close()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("some connections were not served: %v", err)
	}
	return times
}

func TestBurstToTinyBacklogIsServedWithoutSYNRetransmits(t *testing.T) {
	w := newTestWaker(t)
	s, _ := newServer(t, w)
	const n = 200
	times := burstTimes(t, s, w, n)
	var slow int
	var worst time.Duration
	for _, d := range times {
		if d >= time.Second {
			slow++
		}
		worst = max(worst, d)
	}
	// The kernel retransmits a dropped SYN after 1s: any connection at or
	// above that waited for a retransmission.
	if slow > 0 {
		t.Errorf("%d of %d connections took >= 1s (worst %v)", slow, n, worst)
	}
	t.Logf("%d connections through a backlog of 5: worst %v", n, worst)
	waitFor(t, "every lease released", func() bool { return w.releases.Load() == n })
}

func TestDialRetriesRefusedConnectRightAfterWake(t *testing.T) {
	// A socket bound but not yet listening: connects to it are refused,
	// like a program that reported ready a moment too early.
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "early")
	defer f.Close()
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	sa4 := sa.(*syscall.SockaddrInet4)
	w := newTestWaker(t)
	w.add("early", &testApp{upstream: netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(sa4.Port))})
	s, _ := newServer(t, w)
	refused := make(chan struct{})
	var once sync.Once
	s.dialErrorHook = func(err error) {
		if errors.Is(err, syscall.ECONNREFUSED) {
			once.Do(func() { close(refused) })
		}
	}
	listening := make(chan error, 1)
	go func() {
		// The program comes up only after the proxy's first connect was
		// refused.
		<-refused
		if err := syscall.Listen(fd, 128); err != nil {
			listening <- err
			return
		}
		ln, err := net.FileListener(f)
		if err == nil {
			serveBackend(t, ln, greetThenEcho)
		}
		listening <- err
	}()
	c := dialTCP(t, listenOne(t, s, "early"))
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("client read: %v, want the greeting of the late listener", err)
	}
	if err := <-listening; err != nil {
		t.Fatal(err)
	}
	if string(buf) != "hi" {
		t.Errorf("got %q, want %q", buf, "hi")
	}
}

func TestDialGivesUpOnRefusedConnects(t *testing.T) {
	// Bound, never listening: every connect is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	w := newTestWaker(t)
	w.add("gone", &testApp{upstream: ap})
	s, logs := newServer(t, w)
	s.DialRefusedRetries = 2
	s.DialRefusedDelay = time.Millisecond
	c := dialTCP(t, listenOne(t, s, "gone"))
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("client read: %v, want EOF", err)
	}
	// The first lease and each of the maxRewakes new ones: all refused,
	// all released.
	waitFor(t, "leases released", func() bool { return w.releases.Load() == 1+maxRewakes })
	if got := w.wakes.Load(); got != 1+maxRewakes {
		t.Errorf("%d leases, want %d (the first and %d new ones after refusals)", got, 1+maxRewakes, maxRewakes)
	}
	if l := logs.String(); !strings.Contains(l, "3 attempts") || !strings.Contains(l, "app=gone") {
		t.Errorf("log does not report the 3 refused attempts for app gone:\n%s", l)
	}
}

// movingWaker leases its first Wake on a dead upstream (a program killed
// after it was found ready, before anyone noticed) and every later one on
// a live backend (the restarted program).
type movingWaker struct {
	*testWaker
	dead, live netip.AddrPort
	calls      atomic.Int64
}

func (w *movingWaker) Wake(ctx context.Context, app string) (netip.AddrPort, func(), error) {
	up := w.live
	if w.calls.Add(1) == 1 {
		up = w.dead
	}
	return up, w.lease(app), nil
}

// A lease whose upstream refuses every connect is given back and the app
// woken again: the client is served by the program behind the new lease,
// not closed, and both leases are released.
func TestRefusingUpstreamIsLeasedAgainAndTheClientServed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	live := startBackend(t, echo)
	w := &movingWaker{testWaker: newTestWaker(t), dead: dead, live: live.addrPort()}
	w.noTry.Store(true) // every connection through Wake
	s, logs := newServer(t, w)
	s.DialRefusedRetries = 1
	s.DialRefusedDelay = time.Millisecond
	c := dialTCP(t, listenOne(t, s, "moved"))
	roundTrip(t, c, "served by the restarted program")
	c.Close()
	waitFor(t, "both leases released", func() bool { return w.releases.Load() == 2 })
	if got := w.calls.Load(); got != 2 {
		t.Errorf("%d wakes, want 2 (the dead lease, then a new one)", got)
	}
	if l := logs.String(); strings.Contains(l, "closing connection") {
		t.Errorf("the connection was closed:\n%s", l)
	}
}

func TestWakeFailureClosesClientAndLogs(t *testing.T) {
	w := newTestWaker(t)
	w.add("broken", &testApp{err: errors.New("program exited with status 3")})
	s, logs := newServer(t, w)
	c := dialTCP(t, listenOne(t, s, "broken"))
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("client read: %v, want EOF", err)
	}
	waitFor(t, "log of the failed wake", func() bool {
		l := logs.String()
		return strings.Contains(l, "level=WARN") && strings.Contains(l, "app=broken") &&
			strings.Contains(l, "program exited with status 3")
	})
}
