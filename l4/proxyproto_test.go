package l4

import (
	"bufio"
	"bytes"
	"fmt"
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

func TestProxyProtocolHeaderPrecedesClientBytes(t *testing.T) {
	w := newTestWaker(t)
	lines := make(chan string, 2)
	w.add("pp", &testApp{start: func() *backend {
		return startBackend(t, func(c *net.TCPConn) {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(c)
			for range 2 {
				l, err := r.ReadString('\n')
				if err != nil {
					lines <- "error: " + err.Error()
					return
				}
				lines <- l
			}
		})
	}})
	s, _ := newServer(t, w)
	if errs := s.Apply(map[string][]Route{"127.0.0.1:0": {{App: "pp", ProxyProtocol: "v1"}}}); errs != nil {
		t.Fatal(errs)
	}
	c := dialTCP(t, s.Addr("127.0.0.1:0").String())
	c.Write([]byte("hello\n"))
	src := c.LocalAddr().(*net.TCPAddr)
	dst := c.RemoteAddr().(*net.TCPAddr)
	want := fmt.Sprintf("PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n", src.Port, dst.Port)
	if got := <-lines; got != want {
		t.Errorf("first line %q, want %q", got, want)
	}
	if got := <-lines; got != "hello\n" {
		t.Errorf("second line %q, want the client's bytes", got)
	}
}
