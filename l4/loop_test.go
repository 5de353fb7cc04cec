package l4

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// usesLoop reports whether s moved its connections through the event loop.
func usesLoop(s *Server) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loops != nil
}

// onlyWake hides a Waker's TryWake, so that every connection takes the
// goroutine path (wake, dial) and is handed over to a loop.
type onlyWake struct{ Waker }

func TestHandedOverConnectionsAreDealtToTheLoopsInTurn(t *testing.T) {
	if testDataPath == DataPathGoroutines {
		t.Skip("no event loops on the goroutine data path")
	}
	w := newTestWaker(t)
	w.add("echo", &testApp{start: func() *backend { return startBackend(t, echo) }})
	s, _ := newServer(t, onlyWake{w})
	s.EventLoops = 3
	addr := listenOne(t, s, "echo")
	for range 6 {
		// One byte there and back: spliced, and left open.
		echoOneByte(t, dialTCP(t, addr))
	}
	perLoop := map[int]int{}
	s.mu.Lock()
	for c := range s.conns {
		if c.lc != nil {
			perLoop[c.lc.loop.idx]++
		}
	}
	loops := len(s.loops)
	s.mu.Unlock()
	if loops != 3 || len(perLoop) != 3 || perLoop[0] != 2 || perLoop[1] != 2 || perLoop[2] != 2 {
		t.Errorf("6 open connections over %d loops: %v per loop, want 2 on each of 3", loops, perLoop)
	}
}

// Connections the loops accept themselves stay on the loop that accepted
// them only while it carries no more than loopSlack connections above the
// least loaded loop: whichever loop the kernel wakes, long connections end
// up spread over the loops.
func TestAcceptedConnectionsAreSpreadOverTheLoops(t *testing.T) {
	if testDataPath == DataPathGoroutines {
		t.Skip("no event loops on the goroutine data path")
	}
	w := newTestWaker(t)
	w.add("echo", &testApp{start: func() *backend { return startBackend(t, echo) }})
	s, _ := newServer(t, w)
	s.EventLoops = 2
	addr := listenOne(t, s, "echo")
	const n = 12
	for range n {
		// One byte there and back: spliced, and left open.
		echoOneByte(t, dialTCP(t, addr))
	}
	s.mu.Lock()
	perLoop := map[int]int{}
	for c := range s.conns {
		if c.lc != nil {
			perLoop[c.lc.loop.idx]++
		}
	}
	counted := []int32{s.loops[0].conns.Load(), s.loops[1].conns.Load()}
	s.mu.Unlock()
	if perLoop[0]+perLoop[1] != n || abs(perLoop[0]-perLoop[1]) > loopSlack+1 {
		t.Errorf("%d open connections over 2 loops: %v per loop, want them within %d of each other", n, perLoop, loopSlack+1)
	}
	if int(counted[0]) != perLoop[0] || int(counted[1]) != perLoop[1] {
		t.Errorf("the loops count %v connections, they carry %v", counted, perLoop)
	}
}

func abs(n int) int { return max(n, -n) }

// echoOneByte sends one byte through c and reads it back, leaving c open.
func echoOneByte(t *testing.T, c *net.TCPConn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	if _, err := c.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'x' {
		t.Fatalf("echo: %q, %v", b, err)
	}
}

func TestDataPathOptionChoosesLoopOrGoroutines(t *testing.T) {
	w := newTestWaker(t)
	w.add("echo", &testApp{start: func() *backend { return startBackend(t, echo) }})
	s, _ := newServer(t, w)
	c := dialTCP(t, listenOne(t, s, "echo"))
	sendAndEcho(t, c, 10, 1)
	want := testDataPath != DataPathGoroutines
	if got := usesLoop(s); got != want {
		t.Errorf("DataPath %q: event loop in use = %v, want %v", testDataPath, got, want)
	}
}

// A client that reads slowly through a small receive buffer makes the proxy's
// writes fill up: the bytes read but not yet written must wait, and the
// source must not be read meanwhile (backpressure), without losing a byte.
func TestSlowReaderGetsEveryByteInOrder(t *testing.T) {
	for _, noSplice := range []bool{false, true} {
		t.Run(map[bool]string{false: "splice", true: "read-write"}[noSplice], func(t *testing.T) {
			testSlowReader(t, noSplice)
		})
	}
}

func testSlowReader(t *testing.T, noSplice bool) {
	const size = 4 << 20
	payload := make([]byte, size)
	rand.NewChaCha8([32]byte{7}).Read(payload)
	w := newTestWaker(t)
	w.add("app", &testApp{start: func() *backend {
		return startBackend(t, func(c *net.TCPConn) {
			c.Write(payload)
			// handler returns: the backend closes with the last bytes.
		})
	}})
	s, _ := newServer(t, w)
	s.noSplice = noSplice
	c := dialTCP(t, listenOne(t, s, "app"))
	c.SetReadBuffer(64 << 10)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	got := sha256.New()
	buf := make([]byte, 4096)
	var n int64
	for {
		k, err := c.Read(buf)
		got.Write(buf[:k])
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", n, err)
		}
	}
	want := sha256.Sum256(payload)
	if n != size || !bytes.Equal(got.Sum(nil), want[:]) {
		t.Fatalf("client got %d bytes (digest match %v), want %d intact", n, bytes.Equal(got.Sum(nil), want[:]), size)
	}
	c.Close()
	waitFor(t, "lease released", func() bool { return w.releases.Load() == 1 })
}

// A backend that answers and closes at once sends its FIN together with the
// last bytes: the proxy must see that EOF without another event, or the
// client would wait forever. Many short exchanges make the race likely.
func TestFINArrivingWithLastBytesEndsConnection(t *testing.T) {
	w := newTestWaker(t)
	w.add("app", &testApp{start: func() *backend {
		return startBackend(t, func(c *net.TCPConn) {
			b := make([]byte, 16)
			n, _ := c.Read(b)
			c.Write(b[:n])
		})
	}})
	s, _ := newServer(t, w)
	addr := listenOne(t, s, "app")
	const conns = 200
	for i := range conns {
		c := dialTCP(t, addr)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte("ping"))
		b, err := io.ReadAll(c)
		if err != nil || string(b) != "ping" {
			t.Fatalf("connection %d: got %q, %v; want \"ping\" then EOF", i, b, err)
		}
		c.Close()
	}
	waitFor(t, "every lease released", func() bool { return w.releases.Load() == conns })
}
