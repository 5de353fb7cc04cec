package sockdiag

import (
	"net"
	"testing"
)

// listen returns a listener on 127.0.0.1 and its port.
func listen(t *testing.T, network, addr string) (net.Listener, uint16) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("listening on %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, uint16(ln.Addr().(*net.TCPAddr).Port)
}

func count(t *testing.T, ports ...uint16) int {
	t.Helper()
	n, err := Established(ports)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestEstablishedCountsConnectionsOnThePorts(t *testing.T) {
	ln4, p4 := listen(t, "tcp4", "127.0.0.1:0")
	ln6, p6 := listen(t, "tcp6", "[::1]:0")
	_, other := listen(t, "tcp4", "127.0.0.1:0")
	if n := count(t, p4, p6); n != 0 {
		t.Fatalf("no connection yet: got %d", n)
	}
	// Two on the IPv4 port, one still in the accept queue; one on IPv6.
	var conns []net.Conn
	for _, a := range []string{ln4.Addr().String(), ln4.Addr().String(), ln6.Addr().String()} {
		c, err := net.Dial("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	acc, err := ln4.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// The client ends have ephemeral local ports: only the server ends count.
	if n := count(t, p4, p6); n != 3 {
		t.Errorf("Established(%d, %d) = %d, want 3", p4, p6, n)
	}
	if n := count(t, p4); n != 2 {
		t.Errorf("Established(%d) = %d, want 2", p4, n)
	}
	if n := count(t, other); n != 0 {
		t.Errorf("a port without connections: %d", n)
	}
	// Many ports: filtered here rather than in the kernel.
	many := []uint16{p4}
	for i := range maxFiltered + 1 {
		many = append(many, uint16(1+i))
	}
	if n := count(t, many...); n != 2 {
		t.Errorf("with %d ports: %d, want 2", len(many), n)
	}
	acc.Close()
	for _, c := range conns {
		c.Close()
	}
}

func TestPortFilterAcceptsOnlyItsPorts(t *testing.T) {
	// Run the bytecode as the kernel does (inet_diag_bc_run).
	run := func(bc []byte, sport uint16) bool {
		at, left := 0, len(bc)
		for left > 0 {
			code, yes, no := bc[at], int(bc[at+1]), int(uint16(bc[at+2])|uint16(bc[at+3])<<8)
			ok := false // bcJump
			if code == bcSourceGE || code == bcSourceLE {
				port := int(uint16(bc[at+6]) | uint16(bc[at+7])<<8)
				ok = int(sport) >= port
				if code == bcSourceLE {
					ok = int(sport) <= port
				}
			}
			step := no
			if ok {
				step = yes
			}
			at, left = at+step, left-step
		}
		return left == 0
	}
	bc := portFilter([]uint16{80, 443, 8080})
	for sport, want := range map[uint16]bool{80: true, 443: true, 8080: true, 81: false, 442: false, 9000: false, 1: false} {
		if got := run(bc, sport); got != want {
			t.Errorf("sport %d: accepted %v, want %v", sport, got, want)
		}
	}
}
