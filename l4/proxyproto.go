package l4

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
)

// proxySignature starts every PROXY protocol v2 header.
const proxySignature = "\r\n\r\n\x00\r\nQUIT\n"

// maxProxyHeaderLen is the longest header appendProxyHeader makes: a v1
// line for IPv6 (the protocol's own bound); v2 takes at most 52 bytes.
const maxProxyHeaderLen = 107

// appendProxyHeader appends the PROXY protocol header of the given version
// ("v1" or "v2") telling the upstream that the connection came from src to
// dst. An empty version appends nothing.
func appendProxyHeader(b []byte, version string, src, dst netip.AddrPort) ([]byte, error) {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	sameFamily := src.Addr().Is4() == dst.Addr().Is4() && src.Addr().IsValid() && dst.Addr().IsValid()
	switch version {
	case "":
		return b, nil
	case "v1":
		if !sameFamily {
			return append(b, "PROXY UNKNOWN\r\n"...), nil
		}
		proto := "TCP6 "
		if src.Addr().Is4() {
			proto = "TCP4 "
		}
		b = append(b, "PROXY "...)
		b = append(b, proto...)
		b = src.Addr().AppendTo(b)
		b = append(b, ' ')
		b = dst.Addr().AppendTo(b)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(src.Port()), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(dst.Port()), 10)
		return append(b, "\r\n"...), nil
	case "v2":
		b = append(b, proxySignature...)
		if !sameFamily {
			// LOCAL command, no address: the upstream uses the real peer.
			return append(b, 0x20, 0x00, 0, 0), nil
		}
		if src.Addr().Is4() {
			b = append(b, 0x21, 0x11, 0, 12) // PROXY, TCP over IPv4, 12 bytes
		} else {
			b = append(b, 0x21, 0x21, 0, 36) // PROXY, TCP over IPv6, 36 bytes
		}
		b = append(b, src.Addr().AsSlice()...)
		b = append(b, dst.Addr().AsSlice()...)
		b = binary.BigEndian.AppendUint16(b, src.Port())
		return binary.BigEndian.AppendUint16(b, dst.Port()), nil
	default:
		return b, fmt.Errorf("unknown proxy_protocol %q (want v1 or v2)", version)
	}
}
