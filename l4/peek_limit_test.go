package l4

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// namelessHeaders is an HTTP request start with no Host header whose
// headers, never ended, run past the peek limit.
func namelessHeaders() []byte {
	b := []byte("GET / HTTP/1.1\r\n")
	for i := 0; len(b) <= maxPeekHTTP+2000; i++ {
		b = fmt.Appendf(b, "X-Pad-%d: %s\r\n", i, strings.Repeat("p", 100))
	}
	return b
}

func TestPeekLimitSendsANamelessClientToTheDefaultRouteIntact(t *testing.T) {
	// Only the limit can decide: the peek timeout is far away.
	_, w, _, addr := namedApps(t, true, time.Hour)
	msg := namelessHeaders()
	c := dialTCP(t, addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if name := string(got[:min(6, len(got))]); name != "fallbk" {
		t.Fatalf("a client past the peek limit without Host reached %q, want the default fallbk", name)
	}
	if echoed := got[6:]; !bytes.Equal(echoed, msg) {
		t.Errorf("the default route got %d bytes back, want the %d sent, unchanged (the peeked ones first)", len(echoed), len(msg))
	}
	if n := w.wakes.Load(); n != 1 {
		t.Errorf("wakes = %d, want 1", n)
	}
}

func TestPeekLimitClosesANamelessClientWithoutADefault(t *testing.T) {
	_, w, logs, addr := namedApps(t, false, time.Hour)
	c := dialTCP(t, addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(namelessHeaders()); err != nil {
		t.Fatal(err)
	}
	// Closed at the limit, not at the peek timeout (an hour).
	if n, err := c.Read(make([]byte, 1)); n != 0 || !(err == io.EOF || isReset(err)) {
		t.Fatalf("read %d bytes, %v; want the proxy's close", n, err)
	}
	if n := w.wakes.Load(); n != 0 {
		t.Errorf("wakes = %d, want 0", n)
	}
	waitFor(t, "no-match log", func() bool { return strings.Contains(logs.String(), "no app for this name") })
}
