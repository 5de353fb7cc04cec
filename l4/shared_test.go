package l4

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestSNIRoutesTLSToTwoBackendsEndToEnd(t *testing.T) {
	cert, pool := testCert(t, "blog.example.test", "shop.example.test", "x.shop.example.test")
	w := newTestWaker(t)
	for _, id := range []string{"blog", "shop"} {
		w.add(id, &testApp{start: func() *backend { return startBackend(t, tlsNameThenEcho(id, cert)) }})
	}
	s, _ := newServer(t, w)
	if errs := s.Apply(map[string][]Route{"127.0.0.1:0": {
		{App: "blog", SNI: []string{"blog.example.test"}},
		{App: "shop", SNI: []string{"shop.example.test", "*.shop.example.test"}},
	}}); errs != nil {
		t.Fatal(errs)
	}
	addr := s.Addr("127.0.0.1:0").String()
	for _, c := range []struct{ name, want string }{
		{"blog.example.test", "blog|blog.example.test"},
		{"shop.example.test", "shop|shop.example.test"},
		{"x.shop.example.test", "shop|x.shop.example.test"},
	} {
		tc, got := tlsDial(t, addr, c.name, pool, nil)
		if got != c.want {
			t.Errorf("%s reached %q, want %q", c.name, got, c.want)
		}
		// The session is end to end: data flows through the backend's TLS.
		if _, err := fmt.Fprintf(tc, "ping %s\n", c.name); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(tc).ReadString('\n')
		if err != nil || line != "ping "+c.name+"\n" {
			t.Errorf("echo through TLS: %q, %v", line, err)
		}
		tc.Close()
	}
	if n := w.wakes.Load(); n != 3 {
		t.Errorf("wakes = %d, want 3", n)
	}
}

func TestSNIClientHelloSplitAcrossRecordsAndSegments(t *testing.T) {
	cert, pool := testCert(t, "blog.example.test", "shop.example.test")
	w := newTestWaker(t)
	for _, id := range []string{"blog", "shop"} {
		w.add(id, &testApp{start: func() *backend { return startBackend(t, tlsNameThenEcho(id, cert)) }})
	}
	s, _ := newServer(t, w)
	if errs := s.Apply(map[string][]Route{"127.0.0.1:0": {
		{App: "blog", SNI: []string{"blog.example.test"}},
		{App: "shop", SNI: []string{"shop.example.test"}},
	}}); errs != nil {
		t.Fatal(errs)
	}
	addr := s.Addr("127.0.0.1:0").String()
	for _, size := range []int{1, 50} {
		wrap := func(c net.Conn) net.Conn { return &fragmentingConn{TCPConn: c.(*net.TCPConn), fragment: size} }
		tc, got := tlsDial(t, addr, "shop.example.test", pool, wrap)
		if got != "shop|shop.example.test" {
			t.Errorf("records of %d bytes: reached %q", size, got)
		}
		tc.Close()
	}
}

func TestHostRoutesHTTPWithNetHTTPClient(t *testing.T) {
	w := newTestWaker(t)
	for _, id := range []string{"wiki", "blog"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(rw, "%s saw %s", id, r.Host)
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		w.add(id, &testApp{upstream: ln.Addr().(*net.TCPAddr).AddrPort()})
	}
	s, _ := newServer(t, w)
	if errs := s.Apply(map[string][]Route{"127.0.0.1:0": {
		{App: "wiki", Host: []string{"wiki.example.test"}},
		{App: "blog", Host: []string{"blog.example.test"}},
	}}); errs != nil {
		t.Fatal(errs)
	}
	addr := s.Addr("127.0.0.1:0").String()
	// Routing is per connection: a client reusing one connection for
	// another Host would stay with the first app. Browsers key their
	// connections by host name; here each host gets its own Transport.
	transports := map[string]*http.Transport{}
	for _, c := range []struct{ host, want string }{
		{"wiki.example.test", "wiki saw wiki.example.test"},
		{"Blog.Example.Test:8080", "blog saw Blog.Example.Test:8080"},
		{"wiki.example.test", "wiki saw wiki.example.test"}, // kept-alive connection
	} {
		tr, ok := transports[c.host]
		if !ok {
			tr = &http.Transport{}
			defer tr.CloseIdleConnections()
			transports[c.host] = tr
		}
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Host = c.host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.host, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != c.want {
			t.Errorf("%s: %q, want %q", c.host, body, c.want)
		}
	}
}

// namedApps serves apps exact_, wild__, deeper and fallbk, each greeting
// with its 6-letter name, behind one address shared by Host; withDefault
// adds the fallback route. peekTimeout zero keeps the default.
func namedApps(t *testing.T, withDefault bool, peekTimeout time.Duration) (*Server, *testWaker, *syncBuffer, string) {
	w := newTestWaker(t)
	for _, id := range []string{"exact_", "wild__", "deeper", "fallbk"} {
		w.add(id, &testApp{start: func() *backend { return startBackend(t, nameThenEcho(id)) }})
	}
	routes := []Route{
		{App: "exact_", Host: []string{"a.example.test"}},
		{App: "wild__", Host: []string{"*.example.test"}},
		{App: "deeper", Host: []string{"*.b.example.test"}},
	}
	if withDefault {
		routes = append(routes, Route{App: "fallbk"})
	}
	s, logs := newServer(t, w)
	s.PeekTimeout = peekTimeout
	if errs := s.Apply(map[string][]Route{"127.0.0.1:0": routes}); errs != nil {
		t.Fatal(errs)
	}
	return s, w, logs, s.Addr("127.0.0.1:0").String()
}

func TestHostWildcardMostSpecificWinsThenDefault(t *testing.T) {
	_, _, _, addr := namedApps(t, true, 0)
	for _, c := range []struct{ host, want string }{
		{"a.example.test", "exact_"},
		{"x.example.test", "wild__"},
		{"b.example.test", "wild__"},
		{"x.y.example.test", "wild__"},
		{"x.b.example.test", "deeper"},
		{"example.test", "fallbk"},
		{"other.test", "fallbk"},
	} {
		got, err := dialHost(t, addr, c.host, 6)
		if err != nil || got != c.want {
			t.Errorf("Host %s: reached %q (%v), want %s", c.host, got, err, c.want)
		}
	}
	// Bytes that are not HTTP go to the default at once.
	c := dialTCP(t, addr)
	c.Write([]byte{0, 0, 0, 8, 4, 210, 22, 47})
	if got := readName(t, c, 6); got != "fallbk" {
		t.Errorf("binary client reached %q, want fallbk", got)
	}
}

func TestNoMatchWithoutDefaultClosesWithoutWaking(t *testing.T) {
	_, w, logs, addr := namedApps(t, false, 0)
	for range 3 {
		if got, err := dialHost(t, addr, "nobody.test", 6); err == nil {
			t.Fatalf("unmatched Host reached %q", got)
		}
	}
	if n := w.wakes.Load(); n != 0 {
		t.Errorf("wakes = %d, want 0", n)
	}
	waitFor(t, "no-match log", func() bool {
		return strings.Contains(logs.String(), `host=nobody.test`)
	})
	if n := strings.Count(logs.String(), "no app for this name"); n != 1 {
		t.Errorf("no-match logged %d times, want 1 (rate-limited)\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "listen=127.0.0.1:0") {
		t.Errorf("no-match log does not name the address:\n%s", logs)
	}
}

func TestPeekedBytesReachUpstreamIntact(t *testing.T) {
	got := make(chan []byte, 1)
	w := newTestWaker(t)
	w.add("rec", &testApp{start: func() *backend {
		return startBackend(t, func(c *net.TCPConn) {
			b, _ := io.ReadAll(c)
			got <- b
		})
	}})
	w.add("other", &testApp{start: func() *backend { return startBackend(t, echo) }})
	s, _ := newServer(t, w)
	if errs := s.Apply(map[string][]Route{"127.0.0.1:0": {
		{App: "rec", Host: []string{"rec.example.test"}},
		{App: "other"},
	}}); errs != nil {
		t.Fatal(errs)
	}
	body := make([]byte, 300<<10)
	rand.Read(body)
	msg := append([]byte("POST /upload HTTP/1.1\r\nHost: REC.example.test\r\nContent-Length: 307200\r\n\r\n"), body...)
	c := dialTCP(t, s.Addr("127.0.0.1:0").String())
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// The first write carries the headers and part of the body, as a
	// client would send them.
	if _, err := c.Write(msg[:6000]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(msg[6000:]); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	select {
	case b := <-got:
		if !bytes.Equal(b, msg) {
			t.Errorf("backend got %d bytes, want the %d sent, unchanged", len(b), len(msg))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("backend got nothing")
	}
}

func TestPeekTimeoutClosesSilentClientWithoutWaking(t *testing.T) {
	_, w, _, addr := namedApps(t, true, 200*time.Millisecond)
	silent := dialTCP(t, addr)
	partial := dialTCP(t, addr)
	partial.Write([]byte("GET / HTTP/1.1\r\nHost: a.exa"))
	for _, c := range []*net.TCPConn{silent, partial} {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Errorf("read %d bytes, %v; want the proxy's close", n, err)
		}
	}
	if n := w.wakes.Load(); n != 0 {
		t.Errorf("wakes = %d, want 0", n)
	}
}

func TestShutdownClosesClientsStillBeingPeeked(t *testing.T) {
	w := newTestWaker(t)
	s := &Server{Waker: w, PeekTimeout: time.Hour, DataPath: testDataPath}
	if errs := s.Apply(map[string][]Route{"127.0.0.1:0": {{App: "a", Host: []string{"a.test"}}}}); errs != nil {
		t.Fatal(errs)
	}
	c := dialTCP(t, s.Addr("127.0.0.1:0").String())
	waitFor(t, "connection tracked", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v, want a clean one", err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ne net.Error
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("peeked client after shutdown: %v, want closed", err)
	}
}

func TestHotReloadChangesNamesOnKeptListener(t *testing.T) {
	w := newTestWaker(t)
	for _, id := range []string{"aaa", "bbb"} {
		w.add(id, &testApp{start: func() *backend { return startBackend(t, nameThenEcho(id)) }})
	}
	s, _ := newServer(t, w)
	apply := func(routes ...Route) {
		t.Helper()
		if errs := s.Apply(map[string][]Route{"127.0.0.1:0": routes}); errs != nil {
			t.Fatal(errs)
		}
	}
	a := Route{App: "aaa", Host: []string{"a.test"}}
	apply(a)
	addr := s.Addr("127.0.0.1:0").String()
	open := dialTCP(t, addr)
	req := httpRequest("a.test")
	open.Write([]byte(req))
	if got := readName(t, open, 3+len(req)); got != "aaa"+req {
		t.Fatalf("a.test reached %q", got)
	}
	if _, err := dialHost(t, addr, "b.test", 3); err == nil {
		t.Fatal("b.test routed before it was added")
	}

	apply(a, Route{App: "bbb", Host: []string{"b.test", "*.b.test"}})
	if got, err := dialHost(t, addr, "x.b.test", 3); err != nil || got != "bbb" {
		t.Errorf("after adding b.test: reached %q, %v", got, err)
	}
	roundTrip(t, open, "aaa's connection is undisturbed")

	apply(a)
	if _, err := dialHost(t, addr, "b.test", 3); err == nil {
		t.Error("b.test still routed after removal")
	}
	if got := s.Addr("127.0.0.1:0").String(); got != addr {
		t.Errorf("listener rebound: %s, was %s", got, addr)
	}
	roundTrip(t, open, "still undisturbed")
}

func TestProxyProtocolHeaderPrecedesPeekedBytes(t *testing.T) {
	for _, version := range []string{"v1", "v2"} {
		t.Run(version, func(t *testing.T) {
			got := make(chan []byte, 1)
			w := newTestWaker(t)
			w.add("pp", &testApp{start: func() *backend {
				return startBackend(t, func(c *net.TCPConn) {
					b, _ := io.ReadAll(c)
					got <- b
				})
			}})
			s, _ := newServer(t, w)
			if errs := s.Apply(map[string][]Route{"127.0.0.1:0": {
				{App: "pp", Host: []string{"pp.test"}, ProxyProtocol: version},
			}}); errs != nil {
				t.Fatal(errs)
			}
			c := dialTCP(t, s.Addr("127.0.0.1:0").String())
			req := httpRequest("pp.test") + "rest of the stream"
			c.Write([]byte(req))
			c.CloseWrite()
			b := <-got
			local := c.LocalAddr().(*net.TCPAddr).AddrPort()
			remote := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			want, err := appendProxyHeader(nil, version, local, remote)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, req...)
			if !bytes.Equal(b, want) {
				t.Errorf("backend got\n%q\nwant\n%q", b, want)
			}
		})
	}
}
