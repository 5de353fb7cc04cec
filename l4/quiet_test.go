package l4

import (
	"io"
	"net"
	"testing"
	"time"
)

func TestClientIdleTimeoutClosesASilentConnectionAndKeepsAChattyOne(t *testing.T) {
	w := newTestWaker(t)
	w.add("web", &testApp{start: func() *backend { return startBackend(t, echo) }})
	s, _ := newServer(t, w)
	const timeout = 300 * time.Millisecond
	addr := listenWith(t, s, Route{App: "web", ClientIdleTimeout: timeout})

	silent, chatty := dialTCP(t, addr), dialTCP(t, addr)
	// Both are spliced and served first.
	for _, c := range []*net.TCPConn{silent, chatty} {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if got, err := echoed(t, c, "hello"); got != "hello" {
			t.Fatalf("first echo: %q, %v", got, err)
		}
	}
	opened := time.Now()
	// The chatty one talks every timeout/3 for three timeouts: never
	// quiet for long enough.
	closed := make(chan time.Time, 1)
	go func() {
		_, _ = io.ReadAll(silent)
		closed <- time.Now()
	}()
	for time.Since(opened) < 3*timeout {
		if got, err := echoed(t, chatty, "tick"); got != "tick" {
			t.Fatalf("chatty connection after %v: %q, %v", time.Since(opened), got, err)
		}
		<-time.After(timeout / 3) // the client's pace, not synchronisation
	}
	select {
	case at := <-closed:
		if quiet := at.Sub(opened); quiet < timeout || quiet > timeout*2 {
			t.Errorf("silent connection closed after %v, want about %v", quiet, timeout)
		}
	default:
		t.Fatal("the silent connection is still open after three timeouts")
	}
	waitFor(t, "the closed connection's release", func() bool { return w.releases.Load() == 1 })
}
