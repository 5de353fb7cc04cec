package appfile

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/dynapm/dynapm/internal/unixaddr"
)

// hostPort is a validated, normalised address: host is "" for the wildcard
// (all addresses), an IP in canonical form otherwise.
// proto is ProtoTCP or ProtoUDP ("" from parseHostPort, which knows of
// no suffix, counts as TCP).
type hostPort struct {
	host  string
	port  uint16
	proto string
	// path is the socket file of a "unix:/path" address (host and port
	// are then empty).
	path string
}

func (a hostPort) String() string {
	if a.path != "" {
		return unixaddr.Prefix + a.path
	}
	s := net.JoinHostPort(a.host, strconv.Itoa(int(a.port)))
	if a.host == "" {
		s = fmt.Sprintf("*:%d", a.port)
	}
	if a.proto == ProtoUDP {
		s += "/" + ProtoUDP
	}
	return s
}

// overlaps reports whether two addresses cannot both be bound: the same
// protocol and port and the same host, or a wildcard on either side. A TCP
// and a UDP socket never clash.
func (a hostPort) overlaps(b hostPort) bool {
	if a.path != "" || b.path != "" {
		return a.path == b.path
	}
	return a.port == b.port && a.isUDP() == b.isUDP() && (a.host == "" || b.host == "" || a.host == b.host)
}

func (a hostPort) isUDP() bool { return a.proto == ProtoUDP }

// parseHostPort splits and validates host:port. The host may be empty, an IP
// literal (IPv6 in brackets) or "localhost"; DNS names are refused because a
// listen or dial address that depends on the resolver can change under a
// running daemon. "localhost" means 127.0.0.1, the address Go binds for it.
func parseHostPort(s string) (hostPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return hostPort{}, fmt.Errorf("expected host:port such as 127.0.0.1:8080, [::1]:8080 or :8080, got %s", Quote(s))
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 || port[0] == '+' {
		return hostPort{}, fmt.Errorf("expected a port number from 1 to 65535, got %s in %s", Quote(port), Quote(s))
	}
	a := hostPort{port: uint16(n)}
	switch {
	case host == "":
	case strings.EqualFold(host, "localhost"):
		a.host = "127.0.0.1"
	default:
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return hostPort{}, fmt.Errorf("expected an IP address, localhost or nothing (all addresses) before the port, got %s in %s", Quote(host), Quote(s))
		}
		if ip.IsUnspecified() {
			// 0.0.0.0 and :: both mean "all addresses" to the kernel's
			// conflict rules (a dual-stack :: also takes IPv4).
			break
		}
		a.host = ip.Unmap().String()
	}
	return a, nil
}

// ListenKey returns the normalised form of a listen address: "*:PORT" for
// the wildcard ("", 0.0.0.0, ::), "127.0.0.1:PORT" for localhost, the
// canonical IP otherwise, with "/udp" after a UDP address. Apps share one listener only when their keys are
// equal; l4 can group listen addresses by it. It returns s unchanged when s
// is not a valid listen address.
func ListenKey(s string) string {
	a, err := parseAddr(s)
	if err != nil {
		return s
	}
	return a.String()
}

// listenAddr validates one listen address.
func (d *decoder) listenAddr(field, s string) bool {
	if _, err := parseAddr(s); err != nil {
		d.errorf(field, "%v", err)
		return false
	}
	return true
}

// upstream validates the upstream address and returns it with "localhost"
// resolved, so that the dialer never consults a resolver, and without a
// /tcp or /udp suffix: the program serves its upstream in the protocols the
// app listens on (upstreamProto checks a suffix against them).
func (d *decoder) upstream(field string, v any) (string, bool) {
	s, ok := d.str(field, v, "a host:port string such as 127.0.0.1:18080, or unix:/path")
	if !ok {
		return "", false
	}
	if p, ok := strings.CutPrefix(s, unixaddr.Prefix); ok {
		if err := checkSocketPath(p); err != nil {
			d.errorf(field, "%v", err)
			return "", false
		}
		return unixaddr.Prefix + p, true
	}
	a, err := parseAddr(s)
	if err != nil {
		d.errorf(field, "%v", err)
		return "", false
	}
	if strings.Contains(s, "/") {
		d.upstreamProto = a.proto
	}
	a.proto = ""
	if a.host == "" {
		d.errorf(field, "expected an address to connect to such as 127.0.0.1:18080, got %s (all addresses)", Quote(s))
		return "", false
	}
	return a.String(), true
}
