package procnet

import (
	"net"
	"net/netip"
	"testing"
)

func TestParseProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000:0050":                         "0.0.0.0:80",
		"00000000000000000000000001000000:1F90": "[::1]:8080",
		"0000000000000000FFFF00000100007F:0016": "[::ffff:127.0.0.1]:22",
	} {
		got, ok := ParseAddr(in)
		if !ok || got.String() != want {
			t.Errorf("ParseAddr(%q) = %v, %v; want %s", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "0100007F", "zz00007F:0050", "0100:0050", "0100007F:fffff"} {
		if got, ok := ParseAddr(bad); ok {
			t.Errorf("ParseAddr(%q) = %v, want failure", bad, got)
		}
	}
}

func TestBoundFindsListenersOfBothProtocols(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	tcp := ln.Addr().(*net.TCPAddr).AddrPort()
	udp := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), pc.LocalAddr().(*net.UDPAddr).AddrPort().Port())
	if got, err := Bound(TCPTables, TCPListen, tcp); err != nil || len(got) != 1 {
		t.Errorf("TCP listener on %s: %v, %v", tcp, got, err)
	}
	if got, err := Bound(UDPTables, UDPUnconnected, udp); err != nil || len(got) != 1 {
		t.Errorf("UDP socket on [::] for %s: %v, %v", udp, got, err)
	}
	if got, _ := Bound(UDPTables, UDPUnconnected, tcp); len(got) != 0 {
		t.Errorf("a TCP listener counted as UDP: %v", got)
	}
	other := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), tcp.Port())
	if got, _ := Bound(TCPTables, TCPListen, other); len(got) != 0 {
		t.Errorf("a listener on 127.0.0.1 counted for 127.0.0.2: %v", got)
	}
}
