package l4

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nameThenEcho tells the client which backend it reached, then echoes.
func nameThenEcho(name string) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		if _, err := c.Write([]byte(name)); err != nil {
			return
		}
		echo(c)
	}
}

// readName reads the n-byte greeting of nameThenEcho.
func readName(t *testing.T, c *net.TCPConn, n int) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("reading greeting: %v", err)
	}
	return string(buf)
}

// roundTrip writes msg and reads its echo.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("writing: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("reading echo: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echo %q, want %q", buf, msg)
	}
}

func twoApps(t *testing.T) *testWaker {
	w := newTestWaker(t)
	w.add("aaa", &testApp{start: func() *backend { return startBackend(t, nameThenEcho("aaa")) }})
	w.add("bbb", &testApp{start: func() *backend { return startBackend(t, nameThenEcho("bbb")) }})
	return w
}

func TestApplyAddsAddressAndKeepsExisting(t *testing.T) {
	s, _ := newServer(t, twoApps(t))
	if errs := s.Apply(map[string][]Route{"127.0.0.1:0": {{App: "aaa"}}}); errs != nil {
		t.Fatal(errs)
	}
	first := s.Addr("127.0.0.1:0").String()
	c := dialTCP(t, first)
	readName(t, c, 3)

	errs := s.Apply(map[string][]Route{
		"127.0.0.1:0":  {{App: "aaa"}},
		"127.0.0.2:0":  {{App: "bbb"}},
		"[::1]:0":      nil, // an address with no routes still listens
		"127.0.0.1:00": {{App: "bbb"}},
	})
	for addr, err := range errs {
		if addr != "[::1]:0" { // IPv6 may be missing on the machine
			t.Errorf("%s: %v", addr, err)
		}
	}
	if got := s.Addr("127.0.0.1:0").String(); got != first {
		t.Errorf("kept address rebound: %s, was %s", got, first)
	}
	roundTrip(t, c, "still flowing")
	if got := readName(t, dialTCP(t, s.Addr("127.0.0.2:0").String()), 3); got != "bbb" {
		t.Errorf("new address routed to %q, want bbb", got)
	}
	if got := readName(t, dialTCP(t, s.Addr("127.0.0.1:00").String()), 3); got != "bbb" {
		t.Errorf("new address routed to %q, want bbb", got)
	}
}

func TestApplyRemovingAddressKeepsItsOpenConnections(t *testing.T) {
	w := twoApps(t)
	s, _ := newServer(t, w)
	addr := listenOne(t, s, "aaa")
	c := dialTCP(t, addr)
	readName(t, c, 3)

	if errs := s.Apply(nil); errs != nil {
		t.Fatal(errs)
	}
	if s.Addr("127.0.0.1:0") != nil {
		t.Error("Addr of a removed address is not nil")
	}
	if nc, err := net.Dial("tcp", addr); err == nil {
		nc.Close()
		t.Fatal("new connection accepted on a removed address")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dialing removed address: %v, want connection refused", err)
	}
	roundTrip(t, c, "open connection survives")
	c.CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Errorf("after half-close: %q, %v; want clean EOF", rest, err)
	}
	waitFor(t, "lease released", func() bool { return w.releases.Load() == 1 })
}

func TestApplyChangingRoutesKeepsSocketAndConnections(t *testing.T) {
	s, _ := newServer(t, twoApps(t))
	addr := listenOne(t, s, "aaa")
	old := dialTCP(t, addr)
	if got := readName(t, old, 3); got != "aaa" {
		t.Fatalf("routed to %q, want aaa", got)
	}
	if errs := s.Apply(map[string][]Route{"127.0.0.1:0": {
		{App: "aaa", SNI: []string{"a.example"}},
		{App: "bbb"},
	}}); errs != nil {
		t.Fatal(errs)
	}
	if got := s.Addr("127.0.0.1:0").String(); got != addr {
		t.Fatalf("socket rebound to %s, was %s", got, addr)
	}
	roundTrip(t, old, "old connection keeps flowing")
	// The address is now shared by name: a new client must speak first.
	nc := dialTCP(t, addr)
	if _, err := nc.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if got := readName(t, nc, 3); got != "bbb" {
		t.Errorf("new connection routed to %q, want the new default route bbb", got)
	}
}

func TestApplyReportsAddressAlreadyTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	s, _ := newServer(t, twoApps(t))
	busy := taken.Addr().String()
	errs := s.Apply(map[string][]Route{
		busy:          {{App: "web"}, {App: "api", Host: []string{"api.example"}}},
		"127.0.0.1:0": {{App: "aaa"}},
	})
	if len(errs) != 1 || errs[busy] == nil {
		t.Fatalf("errors = %v, want one for %s", errs, busy)
	}
	msg := errs[busy].Error()
	if want := "listening on " + busy + ` for apps "api", "web": `; !strings.HasPrefix(msg, want) {
		t.Errorf("error %q does not start with %q", msg, want)
	}
	if !errors.Is(errs[busy], syscall.EADDRINUSE) {
		t.Errorf("error %v does not wrap EADDRINUSE", errs[busy])
	}
	if s.Addr(busy) != nil {
		t.Errorf("Addr(%s) is not nil", busy)
	}
	if got := readName(t, dialTCP(t, s.Addr("127.0.0.1:0").String()), 3); got != "aaa" {
		t.Errorf("other address routed to %q, want aaa", got)
	}
	// Single app: "for app".
	errs = s.Apply(map[string][]Route{busy: {{App: "web"}}})
	if want := "listening on " + busy + ` for app "web": `; errs[busy] == nil || !strings.HasPrefix(errs[busy].Error(), want) {
		t.Errorf("error %v does not start with %q", errs[busy], want)
	}
}
