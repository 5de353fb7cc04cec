package lifecycle

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"time"
)

// A UDP program accepts nothing and may answer nothing a probe could send,
// so an app that only listens on UDP is ready once its program has bound
// the upstream port: a socket in the kernel's UDP table on that port, not
// connected, on the upstream's address or a wildcard, as `ss -lun` lists
// them. The table is read at most this often: it is a file read and parse.
const (
	udpProbeInterval    = 200 * time.Microsecond
	udpProbeMaxInterval = 5 * time.Millisecond
)

// errUDPNotBound is a try that found no socket on the upstream port yet.
var errUDPNotBound = errors.New("no UDP socket bound on the upstream port yet")

// udpTables are the kernel's UDP socket tables, IPv4 and IPv6.
var udpTables = [...]string{"/proc/net/udp", "/proc/net/udp6"}

// onceUDPBound looks for a socket bound on upstream in the kernel's tables.
func onceUDPBound(upstream netip.AddrPort) error {
	for _, path := range udpTables {
		data, err := os.ReadFile(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // a kernel without IPv6
			}
			return fmt.Errorf("reading the UDP socket table: %w", err)
		}
		if udpTableHas(data, upstream) {
			return nil
		}
	}
	return fmt.Errorf("%w (%s)", errUDPNotBound, upstream)
}

// udpTableHas reports whether a /proc/net/udp or udp6 table lists an
// unconnected socket bound to upstream's port on its address or on a
// wildcard.
func udpTableHas(table []byte, upstream netip.AddrPort) bool {
	want := upstream.Addr().Unmap()
	lines := bytes.Split(table, []byte("\n"))
	for _, line := range lines[min(1, len(lines)):] { // the first is the header
		f := bytes.Fields(line)
		// sl local_address rem_address st ...
		if len(f) < 4 {
			continue
		}
		host, port, ok := bytes.Cut(f[1], []byte(":"))
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(string(port), 16, 16)
		if err != nil || uint16(p) != upstream.Port() {
			continue
		}
		// 07, TCP_CLOSE: not connected. A connected socket on the port
		// (a client the program opened) is no listener.
		if string(f[3]) != "07" {
			continue
		}
		addr, ok := procAddr(host)
		if !ok {
			continue
		}
		if addr.IsUnspecified() || addr.Unmap() == want {
			return true
		}
	}
	return false
}

// procAddr decodes an address of /proc/net/{tcp,udp}{,6}: the kernel
// prints each 32-bit word of it in hex, in the machine's byte order.
func procAddr(h []byte) (netip.Addr, bool) {
	raw := make([]byte, hex.DecodedLen(len(h)))
	if _, err := hex.Decode(raw, h); err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.Addr{}, false
	}
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(raw[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	a, _ := netip.AddrFromSlice(raw)
	return a, true
}
