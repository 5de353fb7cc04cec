package l4

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// countingObserver records what an Observer is told.
type countingObserver struct {
	mu         sync.Mutex
	closed     int
	turnedAway map[string]int
}

func (o *countingObserver) ConnectionRefused(string, string) {}

func (o *countingObserver) ConnectionClosed(string, int64, int64) {
	o.mu.Lock()
	o.closed++
	o.mu.Unlock()
}

func (o *countingObserver) ConnectionTurnedAway(app string) {
	o.mu.Lock()
	if o.turnedAway == nil {
		o.turnedAway = map[string]int{}
	}
	o.turnedAway[app]++
	o.mu.Unlock()
}

func (o *countingObserver) turned(app string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.turnedAway[app]
}

// dialFrom connects to addr from the local address src (any 127/8 address
// is the loopback's).
func dialFrom(t *testing.T, src, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn)
}

// echoed reports whether msg comes back on c.
func echoed(t *testing.T, c *net.TCPConn, msg string) (string, error) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(c, buf)
	return string(buf[:n]), err
}

func TestWakeFromTurnsAwayOtherSourcesUntilTheAppRuns(t *testing.T) {
	for _, reply := range []string{"", reply503} {
		w := newTestWaker(t)
		w.add("home", &testApp{start: func() *backend { return startBackend(t, echo) }})
		s, _ := newServer(t, w)
		obs := &countingObserver{}
		s.Observer = obs
		addr := listenWith(t, s, Route{App: "home", UnavailableReply: []byte(reply),
			WakeFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})

		// Asleep: 127.0.0.2 is closed (with the reply), and wakes nothing.
		c := dialFrom(t, "127.0.0.2", addr)
		got, err := io.ReadAll(c)
		if string(got) != reply || (err != nil && !isReset(err)) {
			t.Fatalf("reply %q: turned-away client read %q, %v", reply, got, err)
		}
		if n := w.wakes.Load(); n != 0 {
			t.Fatalf("reply %q: a source outside wake_from woke the app (%d leases)", reply, n)
		}
		waitFor(t, "the turned-away count", func() bool { return obs.turned("home") == 1 })

		// 127.0.0.1 wakes it.
		if got, err := echoed(t, dialFrom(t, "127.0.0.1", addr), "wake"); got != "wake" {
			t.Fatalf("reply %q: allowed source: %q, %v", reply, got, err)
		}
		// Running: 127.0.0.2 is served, on a lease that keeps nothing up.
		if got, err := echoed(t, dialFrom(t, "127.0.0.2", addr), "served"); got != "served" {
			t.Fatalf("reply %q: other source while running: %q, %v", reply, got, err)
		}
		if n := w.passives.Load(); n != 1 {
			t.Errorf("reply %q: passive leases = %d, want 1", reply, n)
		}
		if n := obs.turned("home"); n != 1 {
			t.Errorf("reply %q: turned away = %d, want 1", reply, n)
		}
	}
}
