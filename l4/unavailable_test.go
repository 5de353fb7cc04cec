package l4

import (
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const reply503 = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n"

// listenWith applies one address routed to route and returns it.
func listenWith(t *testing.T, s *Server, route Route) string {
	t.Helper()
	if errs := s.Apply(map[string][]Route{"127.0.0.1:0": {route}}); errs != nil {
		t.Fatal(errs)
	}
	return s.Addr("127.0.0.1:0").String()
}

func TestUnavailableReplyReachesAClientWhoseAppCannotWake(t *testing.T) {
	w := newTestWaker(t)
	w.add("broken", &testApp{err: errors.New("start failed: exit status 3")})
	s, _ := newServer(t, w)
	addr := listenWith(t, s, Route{App: "broken", UnavailableReply: []byte(reply503)})

	c := dialTCP(t, addr)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// A request sent before the wake fails stays unread by the proxy: the
	// reply must still arrive, not be lost to a reset.
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the reply: %v (got %q)", err, got)
	}
	if string(got) != reply503 {
		t.Fatalf("reply = %q, want %q", got, reply503)
	}
}

func TestNoUnavailableReplyByDefault(t *testing.T) {
	w := newTestWaker(t)
	w.add("broken", &testApp{err: errors.New("start failed")})
	s, _ := newServer(t, w)
	addr := listenWith(t, s, Route{App: "broken"})

	c := dialTCP(t, addr)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if n != 0 || (err != io.EOF && !isReset(err)) {
		t.Fatalf("read = %d bytes %q, %v; want a bare close", n, buf[:n], err)
	}
}

func TestUnavailableReplyIsFollowedByAClose(t *testing.T) {
	w := newTestWaker(t)
	w.add("broken", &testApp{err: errors.New("start failed")})
	s, _ := newServer(t, w)
	addr := listenWith(t, s, Route{App: "broken", UnavailableReply: []byte(strings.Repeat("x", 4096))})
	c := dialTCP(t, addr)
	// The proxy must close: Read sees the reply then EOF (or a reset), within
	// the write timeout plus the linger.
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after the reply: %v", err)
	}
	if len(got) != 4096 {
		t.Fatalf("got %d bytes of the reply, want 4096 (err %v)", len(got), err)
	}
}

// The attack: a 5,000-connection flood refused by max_pending wrote one
// WARN line per connection. Drops are counted per app and reason: the
// first is logged at once, the rest of each interval in one line.
func TestRefusedConnectionsAreLoggedAsACountPerApp(t *testing.T) {
	w := newTestWaker(t)
	w.add("full", &testApp{err: errors.New("too many pending connections")})
	s, logs := newServer(t, w)
	s.DropLogInterval = 200 * time.Millisecond
	addr := listenOne(t, s, "full")
	const clients = 50
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.Copy(io.Discard, c) // closed unserved
		}()
	}
	wg.Wait()
	counted := func() (lines, drops int) {
		for line := range strings.Lines(logs.String()) {
			if !strings.Contains(line, "connection closed unserved") {
				continue
			}
			lines++
			if !strings.Contains(line, "app=full") || !strings.Contains(line, "too many pending") {
				t.Errorf("a drop's line lacks the app or the reason: %s", line)
			}
			more := 0
			if i := strings.Index(line, " more="); i >= 0 {
				more, _ = strconv.Atoi(strings.Fields(line[i+len(" more="):])[0])
				drops += more
			} else {
				drops++
			}
		}
		return lines, drops
	}
	waitFor(t, "every drop counted in the log", func() bool { _, d := counted(); return d == clients })
	if lines, _ := counted(); lines > 10 {
		t.Errorf("%d log lines for %d refused connections, want a count per interval:\n%s", lines, clients, logs)
	}
}
