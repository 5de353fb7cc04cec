package l4

import "net/netip"

// appendProxyHeaderDgram appends the PROXY protocol v2 header of a
// datagram from src to dst: the stream form with the transport byte
// saying UDP (the spec's DGRAM), sent ahead of every datagram of a flow.
func appendProxyHeaderDgram(b []byte, src, dst netip.AddrPort) []byte {
	start := len(b)
	b, _ = appendProxyHeader(b, "v2", src, dst) // v2 is always known
	if fam := &b[start+len(proxySignature)+1]; *fam&0x0f == 0x1 {
		*fam = *fam&0xf0 | 0x2 // STREAM to DGRAM; LOCAL has no transport
	}
	return b
}
