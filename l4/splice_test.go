package l4

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"
)

// sendAndEcho writes size pseudo-random bytes through c, half-closes, reads
// the echo until EOF and fails unless the echo's digest matches.
func sendAndEcho(t *testing.T, c *net.TCPConn, size int, seed uint64) {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	sent := sha256.New()
	werr := make(chan error, 1)
	go func() {
		src := io.LimitReader(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}), int64(size))
		_, err := io.Copy(io.MultiWriter(c, sent), src)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	got := sha256.New()
	n, err := io.Copy(got, c)
	if err != nil {
		t.Fatalf("reading echo: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("writing: %v", err)
	}
	if n != int64(size) {
		t.Fatalf("echo has %d bytes, want %d", n, size)
	}
	if !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		t.Fatalf("echo of %d bytes differs from what was sent", size)
	}
}

func TestSpliceKeepsBytesIntactAtEverySize(t *testing.T) {
	w := newTestWaker(t)
	w.add("echo", &testApp{start: func() *backend { return startBackend(t, echo) }})
	s, _ := newServer(t, w)
	addr := listenOne(t, s, "echo")
	sizes := []int{0, 1, 100, bufSize - 1, bufSize, bufSize + 1, 1 << 20, 50 << 20}
	for i, size := range sizes {
		c := dialTCP(t, addr)
		sendAndEcho(t, c, size, uint64(i))
	}
	waitFor(t, "every lease released", func() bool { return w.releases.Load() == int64(len(sizes)) })
	if got := w.wakes.Load(); got != int64(len(sizes)) {
		t.Errorf("wakes = %d, want %d", got, len(sizes))
	}
}

func TestClientHalfCloseStillGetsReply(t *testing.T) {
	w := newTestWaker(t)
	got := make(chan string, 1)
	w.add("app", &testApp{start: func() *backend {
		return startBackend(t, func(c *net.TCPConn) {
			b, _ := io.ReadAll(c) // until the client's EOF
			got <- string(b)
			c.Write([]byte("reply after EOF"))
		})
	}})
	s, _ := newServer(t, w)
	c := dialTCP(t, listenOne(t, s, "app"))
	c.Write([]byte("request"))
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if g := <-got; g != "request" {
		t.Errorf("backend read %q before EOF, want %q", g, "request")
	}
	if string(reply) != "reply after EOF" {
		t.Errorf("client got %q, want the reply sent after its half-close", reply)
	}
	waitFor(t, "lease released", func() bool { return w.releases.Load() == 1 })
}

func TestBackendClosingFirstEndsConnection(t *testing.T) {
	w := newTestWaker(t)
	w.add("app", &testApp{start: func() *backend {
		return startBackend(t, func(c *net.TCPConn) {
			c.Write([]byte("bye"))
			// handler returns: the backend closes first.
		})
	}})
	s, _ := newServer(t, w)
	c := dialTCP(t, listenOne(t, s, "app"))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "bye" {
		t.Errorf("got %q, want %q", b, "bye")
	}
	// The client's own close ends the other direction.
	c.Close()
	waitFor(t, "lease released", func() bool { return w.releases.Load() == 1 })
}

func TestBackendResetReachesClient(t *testing.T) {
	w := newTestWaker(t)
	w.add("app", &testApp{start: func() *backend {
		return startBackend(t, func(c *net.TCPConn) {
			io.ReadFull(c, make([]byte, 1))
			c.SetLinger(0)
			c.Close()
		})
	}})
	s, _ := newServer(t, w)
	c := dialTCP(t, listenOne(t, s, "app"))
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("x"))
	_, err := io.ReadAll(c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read error = %v, want a connection reset", err)
	}
	waitFor(t, "lease released", func() bool { return w.releases.Load() == 1 })
}

func TestClientResetReachesBackend(t *testing.T) {
	w := newTestWaker(t)
	backendErr := make(chan error, 1)
	w.add("app", &testApp{start: func() *backend {
		return startBackend(t, func(c *net.TCPConn) {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write([]byte("x"))
			_, err := io.ReadAll(c)
			backendErr <- err
		})
	}})
	s, _ := newServer(t, w)
	c := dialTCP(t, listenOne(t, s, "app"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	c.SetLinger(0)
	c.Close()
	if err := <-backendErr; !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("backend read error = %v, want a connection reset", err)
	}
	waitFor(t, "lease released", func() bool { return w.releases.Load() == 1 })
}

func TestReleaseCalledOncePerConnection(t *testing.T) {
	w := newTestWaker(t)
	w.add("echo", &testApp{start: func() *backend { return startBackend(t, echo) }})
	s, _ := newServer(t, w)
	addr := listenOne(t, s, "echo")
	const n = 30
	for i := range n {
		c := dialTCP(t, addr)
		switch i % 3 {
		case 0: // clean exchange
			sendAndEcho(t, c, 10, uint64(i))
		case 1: // client reset
			c.Write([]byte("x"))
			io.ReadFull(c, make([]byte, 1))
			c.SetLinger(0)
			c.Close()
		case 2: // client closes without a word
			c.Close()
		}
	}
	waitFor(t, "every lease released", func() bool { return w.releases.Load() == n })
	if got := w.wakes.Load(); got != n {
		t.Errorf("wakes = %d, want %d", got, n)
	}
	// testWaker fails the test on a second release of the same lease.
}

func TestBytesSentWhileHeldArriveIntact(t *testing.T) {
	w := newTestWaker(t)
	var started bool // written before the gate opens, by Wake, read after
	app := w.add("late", &testApp{gate: make(chan struct{}), start: func() *backend {
		started = true
		return startBackend(t, echo)
	}})
	s, _ := newServer(t, w)
	c := dialTCP(t, listenOne(t, s, "late"))
	early := make([]byte, 64<<10)
	for i := range early {
		early[i] = byte(i * 7)
	}
	// Small enough to sit in the kernel's buffers while nobody reads.
	if _, err := c.Write(early); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "connection held in Wake", func() bool { return w.waiting.Load() == 1 })
	if started {
		t.Fatal("backend started before the gate opened")
	}
	close(app.gate)
	c.CloseWrite()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, early) {
		t.Fatalf("echo of the early bytes differs (%d bytes, want %d)", len(got), len(early))
	}
}
