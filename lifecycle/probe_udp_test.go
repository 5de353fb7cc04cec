package lifecycle

import (
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/dynapm/dynapm/appfile"
)

func TestUDPBoundProbe(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bound := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := onceUDPBound(bound); err != nil {
		t.Fatalf("a bound socket was not found: %v", err)
	}
	// A connected socket of another program on a port is no listener.
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(bound))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc.Close()
	client := c.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := onceUDPBound(client); !errors.Is(err, errUDPNotBound) {
		t.Errorf("a connected socket counted as bound: %v", err)
	}
	if err := onceUDPBound(bound); !errors.Is(err, errUDPNotBound) {
		t.Errorf("a closed socket still counts as bound: %v", err)
	}
	// A wildcard IPv6 socket serves 127.0.0.1 too.
	pc6, err := net.ListenPacket("udp", "[::]:0")
	if err != nil {
		t.Skipf("no IPv6: %v", err)
	}
	defer pc6.Close()
	port := pc6.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	if err := onceUDPBound(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)); err != nil {
		t.Errorf("a socket on [::] was not found: %v", err)
	}
}

func TestFreePortInEveryProtocol(t *testing.T) {
	spec, err := appfile.Parse(filepath.Join(t.TempDir(), "dns.yaml"), []byte("listen: ['127.0.0.1:1/udp', '127.0.0.1:1']\ncommand: x\n"))
	if err != nil {
		t.Fatal(err)
	}
	up, port, err := pickUpstream(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if int(up.Port()) != port {
		t.Fatalf("upstream %s, port %d", up, port)
	}
	// The program can bind it in both.
	ln, err := net.Listen("tcp4", up.String())
	if err != nil {
		t.Fatalf("TCP: %v", err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp4", up.String())
	if err != nil {
		t.Fatalf("UDP: %v", err)
	}
	pc.Close()
}
