package sockdiag

import (
	"net"
	"net/netip"
	"testing"
)

func bound(t *testing.T, ap netip.AddrPort) bool {
	t.Helper()
	found, err := UDPBound(ap)
	if err != nil {
		t.Fatalf("UDPBound(%s): %v", ap, err)
	}
	return found
}

func listenUDP(t *testing.T, network, addr string) (net.PacketConn, netip.AddrPort) {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("listening on %s: %v", addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc, pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestUDPBoundFindsTheReceivingSocketOnly(t *testing.T) {
	if !udpDiagWorks() {
		t.Skip("this kernel answers no UDP sock_diag lookups (no udp_diag module)")
	}
	pc, ap := listenUDP(t, "udp4", "127.0.0.1:0")
	if !bound(t, ap) {
		t.Fatalf("%s is bound, not found", ap)
	}
	// Another address on the port: nothing receives there.
	if other := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), ap.Port()); bound(t, other) {
		t.Errorf("%s found, only 127.0.0.1 is bound", other)
	}
	// A connected socket receives only from its peer: no server.
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := c.LocalAddr().(*net.UDPAddr).AddrPort()
	if bound(t, client) {
		t.Errorf("the connected socket on %s counted as bound", client)
	}
	pc.Close()
	if bound(t, ap) {
		t.Errorf("%s closed, still found", ap)
	}
	// A wildcard socket serves 127.0.0.1: IPv4, and dual-stack IPv6.
	_, any4 := listenUDP(t, "udp4", "0.0.0.0:0")
	if !bound(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), any4.Port())) {
		t.Errorf("a socket on 0.0.0.0:%d not found", any4.Port())
	}
	_, any6 := listenUDP(t, "udp", "[::]:0")
	for _, a := range []string{"127.0.0.1", "::1"} {
		if !bound(t, netip.AddrPortFrom(netip.MustParseAddr(a), any6.Port())) {
			t.Errorf("a socket on [::]:%d not found for %s", any6.Port(), a)
		}
	}
	_, six := listenUDP(t, "udp6", "[::1]:0")
	if !bound(t, six) {
		t.Errorf("%s is bound, not found", six)
	}
	if v4 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), six.Port()); bound(t, v4) {
		t.Errorf("[::1] serves no IPv4, but %s was found", v4)
	}
}
