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
	const timeout = 500 * time.Millisecond
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
		<-time.After(timeout / 5) // the client's pace, not synchronisation
	}
	select {
	case at := <-closed:
		if quiet := at.Sub(opened); quiet < timeout {
			t.Errorf("silent connection closed after %v, before its timeout %v", quiet, timeout)
		}
	default:
		t.Fatal("the silent connection is still open after three timeouts")
	}
	waitFor(t, "the closed connection's release", func() bool { return w.releases.Load() == 1 })
}

// With a TrafficIdle, bytes moving are told to the TrafficWaker, silence
// is not, and nothing is closed for it.
func TestTrafficIsToldToTheWakerOnlyWhenBytesMove(t *testing.T) {
	w := newTestWaker(t)
	for _, app := range []string{"quiet", "chatty"} {
		w.add(app, &testApp{start: func() *backend { return startBackend(t, echo) }})
	}
	s, _ := newServer(t, w)
	const idle = 200 * time.Millisecond
	if errs := s.Apply(map[string][]Route{
		"127.0.0.1:0": {{App: "quiet", TrafficIdle: idle}},
		"127.0.0.2:0": {{App: "chatty", TrafficIdle: idle}},
	}); errs != nil {
		t.Fatal(errs)
	}
	quiet, chatty := dialTCP(t, s.Addr("127.0.0.1:0").String()), dialTCP(t, s.Addr("127.0.0.2:0").String())
	for _, c := range []*net.TCPConn{quiet, chatty} {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if got, err := echoed(t, c, "hello"); got != "hello" {
			t.Fatalf("first echo: %q, %v", got, err)
		}
	}
	// The first bytes of each are seen by a sweep; from then on only the
	// chatty one's.
	waitFor(t, "the first bytes told", func() bool { return w.trafficOf("quiet") >= 1 && w.trafficOf("chatty") >= 1 })
	before := w.trafficOf("quiet")
	for end := time.Now().Add(4 * idle); time.Now().Before(end); {
		if got, err := echoed(t, chatty, "tick"); got != "tick" {
			t.Fatalf("chatty: %q, %v", got, err)
		}
		<-time.After(idle / 4) // the client's pace, not synchronisation
	}
	if n := w.trafficOf("quiet"); n != before {
		t.Errorf("a silent connection was told as traffic %d more times", n-before)
	}
	if n := w.trafficOf("chatty"); n < 4 {
		t.Errorf("chatty connection told %d times over four idle timeouts, want at least 4", n)
	}
	// Quiet, but open: traffic alone closes nothing.
	if got, err := echoed(t, quiet, "still here"); got != "still here" {
		t.Fatalf("the quiet connection: %q, %v", got, err)
	}
}
