package l4

import "encoding/binary"

// TLS record layer constants (RFC 8446 section 5.1).
const (
	tlsRecordHeaderLen    = 5
	tlsRecordHandshake    = 0x16
	tlsHandshakeHello     = 0x01
	tlsMaxFragment        = 1 << 14
	tlsExtServerName      = 0x0000
	tlsServerNameHost     = 0x00
	maxServerNameLen      = 255
	tlsHandshakeHeaderLen = 4
)

// sniffTLS looks for the server name in the TLS ClientHello at the start of
// b. done is false while more bytes are needed; when done, name is the
// lowercased server_name, or "" if the bytes are not a ClientHello or it has
// no server_name. The hello may be split across several records (each
// record is complete before its bytes count) and across reads: sniffTLS
// starts over on the whole of b every time, walking record headers only
// until the whole hello has arrived, then copying fragments together once if
// there are several. It never panics on any input.
func sniffTLS(b []byte) (name string, done bool) {
	// First pass: how many handshake bytes have arrived in complete records.
	var hdr [tlsHandshakeHeaderLen]byte
	avail, records := 0, 0
	need := -1 // handshake message length with its header, once known
	for off := 0; ; {
		if need >= 0 && avail >= need {
			break
		}
		if len(b)-off < tlsRecordHeaderLen {
			return "", false
		}
		if b[off] != tlsRecordHandshake || b[off+1] != 3 {
			return "", true // not TLS, or something other than the hello first
		}
		n := int(binary.BigEndian.Uint16(b[off+3:]))
		if n == 0 || n > tlsMaxFragment {
			return "", true // empty handshake fragments are forbidden
		}
		if len(b)-off-tlsRecordHeaderLen < n {
			return "", false
		}
		frag := b[off+tlsRecordHeaderLen : off+tlsRecordHeaderLen+n]
		for i := 0; avail+i < len(hdr) && i < len(frag); i++ {
			hdr[avail+i] = frag[i]
		}
		avail += n
		records++
		off += tlsRecordHeaderLen + n
		if need < 0 && avail >= len(hdr) {
			if hdr[0] != tlsHandshakeHello {
				return "", true
			}
			need = len(hdr) + (int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3]))
		}
	}
	// Second pass: the message in one piece.
	var msg []byte
	if records == 1 {
		msg = b[tlsRecordHeaderLen : tlsRecordHeaderLen+need]
	} else {
		msg = make([]byte, 0, avail)
		for off := 0; len(msg) < need; {
			n := int(binary.BigEndian.Uint16(b[off+3:]))
			msg = append(msg, b[off+tlsRecordHeaderLen:off+tlsRecordHeaderLen+n]...)
			off += tlsRecordHeaderLen + n
		}
		msg = msg[:need]
	}
	return helloServerName(msg[tlsHandshakeHeaderLen:]), true
}

// helloServerName returns the host_name of the server_name extension of a
// ClientHello body (RFC 8446 4.1.2, RFC 6066 section 3), or "".
func helloServerName(body []byte) string {
	r := byteReader(body)
	if !r.skip(2+32) || // legacy_version, random
		!r.skipVec(1) || // legacy_session_id
		!r.skipVec(2) || // cipher_suites
		!r.skipVec(1) { // legacy_compression_methods
		return ""
	}
	exts, ok := r.vec(2)
	if !ok {
		return "" // no extensions (or truncated): no name
	}
	for len(exts) > 0 {
		typ, ok1 := exts.u16()
		data, ok2 := exts.vec(2)
		if !ok1 || !ok2 {
			return ""
		}
		if typ != tlsExtServerName {
			continue
		}
		list, ok := data.vec(2)
		if !ok {
			return ""
		}
		for len(list) > 0 {
			nameType, ok1 := list.u8()
			host, ok2 := list.vec(2)
			if !ok1 || !ok2 {
				return ""
			}
			if nameType == tlsServerNameHost {
				return normalizeName(host)
			}
		}
		return ""
	}
	return ""
}

// normalizeName lowercases an ASCII host name and drops a trailing dot. It
// returns "" for names too long or with bytes no host name has, so that they
// match nothing (and never reach a log unquoted).
func normalizeName(b []byte) string {
	if len(b) > 0 && b[len(b)-1] == '.' {
		b = b[:len(b)-1]
	}
	if len(b) == 0 || len(b) > maxServerNameLen {
		return ""
	}
	lower := true
	for _, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			lower = false
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.', c == '_', c == '*':
		default:
			return ""
		}
	}
	if lower {
		return string(b)
	}
	out := make([]byte, len(b))
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return string(out)
}

// byteReader reads big-endian fields off the front of a byte slice; every
// method reports false, consuming nothing, when the slice is too short.
type byteReader []byte

func (r *byteReader) u8() (int, bool) {
	if len(*r) < 1 {
		return 0, false
	}
	v := int((*r)[0])
	*r = (*r)[1:]
	return v, true
}

func (r *byteReader) u16() (int, bool) {
	if len(*r) < 2 {
		return 0, false
	}
	v := int(binary.BigEndian.Uint16(*r))
	*r = (*r)[2:]
	return v, true
}

func (r *byteReader) skip(n int) bool {
	if len(*r) < n {
		return false
	}
	*r = (*r)[n:]
	return true
}

// vec reads a vector with a lenBytes-byte (1 or 2) length prefix.
func (r *byteReader) vec(lenBytes int) (byteReader, bool) {
	if len(*r) < lenBytes {
		return nil, false
	}
	n := int((*r)[0])
	if lenBytes == 2 {
		n = int(binary.BigEndian.Uint16(*r))
	}
	if len(*r) < lenBytes+n {
		return nil, false
	}
	v := (*r)[lenBytes : lenBytes+n]
	*r = (*r)[lenBytes+n:]
	return v, true
}

func (r *byteReader) skipVec(lenBytes int) bool {
	_, ok := r.vec(lenBytes)
	return ok
}
