package l4

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestProxyHeaderEncodings(t *testing.T) {
	v4src := netip.MustParseAddrPort("192.0.2.1:51000")
	v4dst := netip.MustParseAddrPort("198.51.100.2:443")
	v6src := netip.MustParseAddrPort("[2001:db8::1]:51000")
	v6dst := netip.MustParseAddrPort("[2001:db8::2]:443")
	mapped := netip.MustParseAddrPort("[::ffff:192.0.2.1]:51000")
	sig := proxySignature
	tests := []struct {
		name, version string
		src, dst      netip.AddrPort
		want          string
	}{
		{"none", "", v4src, v4dst, ""},
		{"v1 ipv4", "v1", v4src, v4dst, "PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\n"},
		{"v1 ipv6", "v1", v6src, v6dst, "PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\n"},
		{"v1 mapped ipv4", "v1", mapped, v4dst, "PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\n"},
		{"v1 mixed", "v1", v6src, v4dst, "PROXY UNKNOWN\r\n"},
		{"v2 ipv4", "v2", v4src, v4dst, sig + "\x21\x11\x00\x0c" +
			"\xc0\x00\x02\x01" + "\xc6\x33\x64\x02" + "\xc7\x38" + "\x01\xbb"},
		{"v2 ipv6", "v2", v6src, v6dst, sig + "\x21\x21\x00\x24" +
			"\x20\x01\x0d\xb8" + "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01" +
			"\x20\x01\x0d\xb8" + "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02" +
			"\xc7\x38" + "\x01\xbb"},
		{"v2 mixed", "v2", v6src, v4dst, sig + "\x20\x00\x00\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := appendProxyHeader(nil, tt.version, tt.src, tt.dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, []byte(tt.want)) {
				t.Errorf("header\n got %q\nwant %q", got, tt.want)
			}
		})
	}
	if _, err := appendProxyHeader(nil, "v3", v4src, v4dst); err == nil {
		t.Error("unknown version accepted")
	}
}

// The longest header fits the room preamble makes for it.
func TestLongestProxyHeaderFitsMaxProxyHeaderLen(t *testing.T) {
	src := netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")
	for _, version := range []string{"v1", "v2"} {
		h, err := appendProxyHeader(nil, version, src, src)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) > maxProxyHeaderLen {
			t.Errorf("%s header of %d bytes, more than maxProxyHeaderLen (%d)", version, len(h), maxProxyHeaderLen)
		}
	}
}

// The PROXY header reaches the upstream ahead of every byte of the client,
// and the client's half-close and the upstream's reply follow, whichever
// way the connection goes: held while its app wakes (its bytes and its
// half-close waiting in the kernel meanwhile), served at once by the
// accept loop because the app is ready, or over the connection a ConnWaker
// hands over; over IPv4 and IPv6, the addresses coming from the accepted
// socket itself on the event loop's path.
func TestProxyHeaderPrecedesEveryClientByte(t *testing.T) {
	hosts := []string{"127.0.0.1"}
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		ln.Close()
		hosts = append(hosts, "[::1]")
	}
	data := make([]byte, 256<<10) // bulk: the loop turns to splice after the header
	for i := range data {
		data[i] = byte(i * 13)
	}
	for _, host := range hosts {
		for _, version := range []string{"v1", "v2"} {
			for _, way := range []string{"held", "ready", "handed"} {
				t.Run(host+"/"+version+"/"+way, func(t *testing.T) {
					testProxyHeader(t, host, version, way, data)
				})
			}
		}
	}
}

func testProxyHeader(t *testing.T, host, version, way string, data []byte) {
	got := make(chan []byte, 1)
	w := newTestWaker(t)
	app := w.add("pp", &testApp{start: func() *backend {
		return startBackend(t, func(c *net.TCPConn) {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			b, _ := io.ReadAll(c)
			if len(b) == 0 {
				return // a handed-over connection the goroutine path closed
			}
			got <- b
			c.Write([]byte("ok"))
		})
	}})
	var waker Waker = w
	switch way {
	case "held":
		app.gate = make(chan struct{})
	case "ready":
		_, release, err := w.Wake(context.Background(), "pp") // starts the backend
		if err != nil {
			t.Fatal(err)
		}
		release()
	case "handed":
		waker = &handingWaker{Waker: onlyWake{w}}
	}
	s, _ := newServer(t, waker)
	listen := host + ":0"
	if errs := s.Apply(map[string][]Route{listen: {{App: "pp", ProxyProtocol: version}}}); errs != nil {
		t.Fatal(errs)
	}
	c := dialTCP(t, s.Addr(listen).String())
	c.SetDeadline(time.Now().Add(10 * time.Second))
	first := 16 << 10
	if _, err := c.Write(data[:first]); err != nil {
		t.Fatal(err)
	}
	if way == "held" {
		waitFor(t, "connection held in Wake", func() bool { return w.waiting.Load() == 1 })
		close(app.gate)
	}
	written := make(chan error, 1)
	go func() {
		_, err := c.Write(data[first:])
		if err == nil {
			err = c.CloseWrite()
		}
		written <- err
	}()
	reply, err := io.ReadAll(c)
	if err != nil || string(reply) != "ok" {
		t.Fatalf("client read %q, %v; want the upstream's ok", reply, err)
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	want, err := appendProxyHeader(nil, version, c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, data...)
	if b := <-got; !bytes.Equal(b, want) {
		n := min(len(b), len(want), 120)
		t.Fatalf("upstream got %d bytes starting %q, want %d starting %q", len(b), b[:n], len(want), want[:n])
	}
	if way == "ready" && testDataPath != DataPathGoroutines {
		if n := w.tryWakes.Load(); n != 1 {
			t.Errorf("%d connections leased by the accept loop, want 1", n)
		}
	}
	if hw, ok := waker.(*handingWaker); ok {
		if n := hw.handed.Load(); n != 1 {
			t.Errorf("the waker handed over %d connections, want 1", n)
		}
	}
	// One upstream connection per client, but on the goroutine path,
	// which closes a handed-over connection and dials its own.
	accepts := int64(1)
	if way == "handed" && testDataPath == DataPathGoroutines {
		accepts = 2
	}
	b := app.started.Load()
	waitFor(t, "the upstream's accepts", func() bool { return b.accepts.Load() >= accepts })
	if n := b.accepts.Load(); n != accepts {
		t.Errorf("the upstream accepted %d connections, want %d", n, accepts)
	}
}
