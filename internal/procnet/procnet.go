// Package procnet reads the kernel's socket tables, /proc/net/tcp, tcp6,
// udp and udp6, as ss(8) does: which sockets are bound to an address.
package procnet

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// The tables of each protocol, IPv4 and IPv6, and the st column of the
// sockets Bound looks for in them: a listening TCP socket (0A) and an
// unconnected UDP socket (07, TCP_CLOSE: a server's, not a client's
// connected one).
var (
	TCPTables = []string{"/proc/net/tcp", "/proc/net/tcp6"}
	UDPTables = []string{"/proc/net/udp", "/proc/net/udp6"}
)

const (
	TCPListen      = "0A"
	UDPUnconnected = "07"
)

// Bound returns the inodes of the sockets of the tables in state st that
// take traffic for ap: bound to its port, and to its address or to a
// wildcard. A missing table (a kernel without IPv6) is skipped.
func Bound(tables []string, st string, ap netip.AddrPort) ([]string, error) {
	var inodes []string
	for _, path := range tables {
		found, err := bound(path, st, ap)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return inodes, fmt.Errorf("reading the socket table: %w", err)
		}
		inodes = append(inodes, found...)
	}
	return inodes, nil
}

func bound(path, st string, ap netip.AddrPort) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var inodes []string
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != st {
			continue
		}
		local, ok := ParseAddr(fields[1])
		if !ok || local.Port() != ap.Port() {
			continue
		}
		if a := local.Addr().Unmap(); a == ap.Addr().Unmap() || a.IsUnspecified() {
			inodes = append(inodes, fields[9])
		}
	}
	return inodes, sc.Err()
}

// ParseAddr parses an address of the tables: the IP as 32-bit words in
// hex, each in the kernel's byte order, then ":" and the port in hex.
func ParseAddr(s string) (netip.AddrPort, bool) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	raw, err := hex.DecodeString(ipHex)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, false
	}
	ip := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(ip[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(addr, uint16(port)), true
}
