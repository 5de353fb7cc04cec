package l4

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// earlyWaker is testWaker as an EarlyWaker: it tells told (while the
// app's Wake is held at its gate) before it returns the app's upstream.
// It notes the local port of the socket of this process connected to
// told once early returns (earlyPort, 0: none), and whether that port
// was bound, unconnected, before WakeEarly was called (reserved): before
// the Manager picks the app's port.
type earlyWaker struct {
	*testWaker
	t         *testing.T
	told      netip.AddrPort
	earlyPort uint16
	reserved  bool
}

func (w *earlyWaker) WakeEarly(ctx context.Context, app string, early func(netip.AddrPort)) (netip.AddrPort, func(), error) {
	bound := make(map[uint16]bool)
	for _, s := range myUDPSockets(w.t) {
		if !s.remote.Addr().IsValid() || s.remote.Port() == 0 {
			bound[s.local.Port()] = true
		}
	}
	early(w.told)
	for _, s := range myUDPSockets(w.t) {
		if s.remote == w.told {
			w.earlyPort = s.local.Port()
			w.reserved = bound[w.earlyPort]
		}
	}
	return w.Wake(ctx, app)
}

// udpSocket is a UDP socket as /proc/net/udp lists it.
type udpSocket struct{ local, remote netip.AddrPort }

// myUDPSockets lists the IPv4 UDP sockets of this process: those of
// /proc/net/udp whose inode one of its descriptors holds.
func myUDPSockets(t *testing.T) []udpSocket {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Error(err)
		return nil
	}
	mine := make(map[string]bool)
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			if ino, ok := strings.CutPrefix(l, "socket:["); ok {
				mine[strings.TrimSuffix(ino, "]")] = true
			}
		}
	}
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		t.Error(err)
		return nil
	}
	var socks []udpSocket
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) < 10 || !mine[f[9]] {
			continue
		}
		socks = append(socks, udpSocket{procAddr(t, f[1]), procAddr(t, f[2])})
	}
	return socks
}

// procAddr parses an IPv4 address of /proc/net/udp: AAAAAAAA:PPPP, the
// address in host order.
func procAddr(t *testing.T, s string) netip.AddrPort {
	a, p, ok := strings.Cut(s, ":")
	ip, err1 := strconv.ParseUint(a, 16, 32)
	port, err2 := strconv.ParseUint(p, 16, 16)
	if !ok || err1 != nil || err2 != nil {
		t.Errorf("bad address %q in /proc/net/udp", s)
		return netip.AddrPort{}
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(ip))
	return netip.AddrPortFrom(netip.AddrFrom4(b), uint16(port))
}

// connectedTo counts the UDP sockets of this machine connected to ap, as
// /proc/net/udp lists them (IPv4).
func connectedTo(t *testing.T, ap netip.AddrPort) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		t.Fatal(err)
	}
	a := ap.Addr().As4()
	want := fmt.Sprintf("%08X:%04X", binary.LittleEndian.Uint32(a[:]), ap.Port())
	n := 0
	for _, l := range strings.Split(string(b), "\n")[1:] {
		if f := strings.Fields(l); len(f) > 2 && f[2] == want {
			n++
		}
	}
	return n
}

// TestUDPFlowConnectsWhileTheAppStarts: a flow woken through an
// EarlyWaker has its socket bound before the app's port is picked and
// connected to the upstream it was told while the app starts, and
// carries the first datagram over that very socket; told another
// upstream than the one it is leased, it lets that socket go and
// connects to the right one.
func TestUDPFlowConnectsWhileTheAppStarts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wrong bool // told an upstream other than the lease's
	}{{"told the upstream", false}, {"told another upstream", true}} {
		t.Run(tc.name, func(t *testing.T) {
			echo := startUDPEcho(t)
			w := &earlyWaker{testWaker: newTestWaker(t), t: t, told: echo}
			if tc.wrong {
				w.told = startUDPEcho(t)
			}
			w.noTry.Store(true)
			gate := make(chan struct{})
			w.add("dns", &testApp{upstream: echo, gate: gate})
			s, _ := newServer(t, w)
			const key = "127.0.0.1:0/udp"
			if errs := s.Apply(map[string][]Route{key: {{App: "dns", FlowTimeout: time.Minute}}}); errs != nil {
				t.Fatal(errs)
			}
			c := udpClient(t, s.Addr(key).String())
			if _, err := c.Write([]byte("first")); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 10*time.Second, func() bool { return w.waiting.Load() == 1 }, "the wake is not held")
			if n := connectedTo(t, w.told); n != 1 {
				t.Fatalf("%d sockets connected to the upstream told while the app starts, want 1", n)
			}
			close(gate)
			buf := make([]byte, 64)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != "first" {
				t.Fatalf("reply %q, %v; want the first datagram back", buf[:n], err)
			}
			if tc.wrong {
				testutil.Eventually(t, 10*time.Second, func() bool { return connectedTo(t, w.told) == 0 },
					"the socket connected to the wrong upstream is still open")
			}
			if n := connectedTo(t, echo); n != 1 {
				t.Fatalf("%d sockets connected to the upstream leased, want the flow's", n)
			}
			if w.earlyPort == 0 {
				t.Fatal("no socket connected while the app starts")
			}
			if !w.reserved {
				t.Fatalf("the early socket's port %d was not bound before WakeEarly: the app's program could have been given it", w.earlyPort)
			}
			var flowPort uint16
			for _, so := range myUDPSockets(t) {
				if so.remote == echo {
					flowPort = so.local.Port()
				}
			}
			if !tc.wrong && flowPort != w.earlyPort {
				t.Fatalf("the flow's socket has port %d, want %d, that of the socket connected while the app started", flowPort, w.earlyPort)
			}
		})
	}
}

// TestUDPFlowToAnIPv6UpstreamDialsOnceWoken: the socket a flow binds
// ahead of the wake is IPv4; told an IPv6 upstream, the flow lets it go
// and dials that upstream once woken.
func TestUDPFlowToAnIPv6UpstreamDialsOnceWoken(t *testing.T) {
	upstream := startUDPServer(t, net.IPv6loopback, nil)
	w := &earlyWaker{testWaker: newTestWaker(t), t: t, told: upstream}
	w.noTry.Store(true)
	gate := make(chan struct{})
	w.add("dns", &testApp{upstream: upstream, gate: gate})
	s, _ := newServer(t, w)
	const key = "127.0.0.1:0/udp"
	if errs := s.Apply(map[string][]Route{key: {{App: "dns", FlowTimeout: time.Minute}}}); errs != nil {
		t.Fatal(errs)
	}
	c := udpClient(t, s.Addr(key).String())
	if _, err := c.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return w.waiting.Load() == 1 }, "the wake is not held")
	for _, so := range myUDPSockets(t) {
		if so.local.Addr().IsUnspecified() {
			t.Fatalf("the IPv4 socket bound ahead, port %d, is still open while the app starts", so.local.Port())
		}
	}
	close(gate)
	buf := make([]byte, 64)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "first" {
		t.Fatalf("reply %q, %v; want the first datagram back", buf[:n], err)
	}
}
