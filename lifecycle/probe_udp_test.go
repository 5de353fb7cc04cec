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

func TestUDPTableParse(t *testing.T) {
	table := []byte("   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n" +
		"  1: 0100007F:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0\n" +
		"  2: 0100007F:14EA 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0\n" +
		"  3: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0\n")
	if !isLittleEndian() {
		t.Skip("the sample table is of a little-endian machine")
	}
	lo := netip.MustParseAddr("127.0.0.1")
	cases := []struct {
		port uint16
		want bool
	}{{0x14E9, true}, {0x14EA, false}, {0x35, true}, {0x36, false}}
	for _, c := range cases {
		if got := udpTableHas(table, netip.AddrPortFrom(lo, c.port)); got != c.want {
			t.Errorf("port %d: got %v, want %v", c.port, got, c.want)
		}
	}
	if udpTableHas(table, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), 0x14E9)) {
		t.Error("a socket on 127.0.0.1 counted for 127.0.0.2")
	}
}

func isLittleEndian() bool {
	a, _ := procAddr([]byte("0100007F"))
	return a == netip.MustParseAddr("127.0.0.1")
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
