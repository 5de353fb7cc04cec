package l4

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Once an app is ready, its connections are served from the accept loop
// (ReadyWaker) on the event loop's path; the first one, which had to wake
// the app, went through Wake. Either way every byte arrives and every lease
// is released once.
func TestConnectionsToAReadyAppAreServedFromTheAcceptLoop(t *testing.T) {
	w := newTestWaker(t)
	w.add("echo", &testApp{start: func() *backend { return startBackend(t, echo) }})
	s, _ := newServer(t, w)
	addr := listenOne(t, s, "echo")
	first := dialTCP(t, addr)
	roundTrip(t, first, "wakes the app")
	if got := w.tryWakes.Load(); got != 0 {
		t.Fatalf("%d TryWake leases before the app was ready, want 0", got)
	}
	const n = 20
	for i := range n {
		c := dialTCP(t, addr)
		roundTrip(t, c, "warm")
		c.CloseWrite()
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		c.Close()
	}
	want := int64(0)
	if testDataPath != DataPathGoroutines {
		want = n // only the event loop's path leases from the accept loop
	}
	if got := w.tryWakes.Load(); got != want {
		t.Errorf("%d connections leased from the accept loop, want %d (data path %q)", got, want, testDataPath)
	}
	first.Close()
	waitFor(t, "every lease released", func() bool { return w.releases.Load() == w.wakes.Load() })
}

// A ready app whose program does not take the connect at once (its accept
// queue is full, so the kernel drops the SYN) still gets the connection: the
// accept loop leaves it to a goroutine that dials with the retries, and the
// client is served once the program accepts again.
func TestReadyAppWithAFullAcceptQueueIsDialedWithRetries(t *testing.T) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "full-queue")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	upstream := ln.Addr().(*net.TCPAddr).AddrPort()
	// Fill the accept queue (a backlog of 0 holds one connection).
	for range 2 {
		if c, err := net.DialTimeout("tcp", upstream.String(), 200*time.Millisecond); err == nil {
			defer c.Close()
		}
	}

	w := newTestWaker(t)
	w.add("full", &testApp{upstream: upstream}) // ready from the start
	s, _ := newServer(t, w)
	failed := make(chan struct{})
	var once sync.Once
	s.dialErrorHook = func(error) { once.Do(func() { close(failed) }) }
	c := dialTCP(t, listenOne(t, s, "full"))
	c.Write([]byte("served"))
	select {
	case <-failed:
	case <-time.After(10 * time.Second):
		t.Fatal("no connect attempt to the full queue failed")
	}
	// The program accepts again.
	serveBackend(t, ln, echo)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, len("served"))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "served" {
		t.Fatalf("echo %q, %v; want %q", buf, err, "served")
	}
	if testDataPath != DataPathGoroutines && w.tryWakes.Load() != 1 {
		t.Errorf("%d leases from the accept loop, want 1", w.tryWakes.Load())
	}
}
