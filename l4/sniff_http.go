package l4

import "bytes"

// maxMethodLen bounds the request method token; longer means "not HTTP".
const maxMethodLen = 24

// sniffHTTP looks for the Host header of the HTTP/1.x request at the start
// of b. done is false while more bytes are needed; when done, name is the
// Host header's host (lowercased, port and trailing dot dropped), or "" if
// the bytes are not an HTTP/1.x request or the headers ended without Host.
//
// It gives up early on bytes that cannot start a request (a binary protocol
// on the port's default route is routed at once rather than waiting for a
// newline that may never come). Like sniffTLS it starts over on the whole of
// b each time and never panics.
func sniffHTTP(b []byte) (name string, done bool) {
	// The method: a token of letters then a space.
	for i := 0; ; i++ {
		if i == len(b) {
			return "", false
		}
		c := b[i]
		if c == ' ' && i > 0 {
			break
		}
		if c < 'A' || c > 'Z' || i >= maxMethodLen {
			return "", true
		}
	}
	eol := bytes.IndexByte(b, '\n')
	if eol < 0 {
		return "", false
	}
	line := trimCR(b[:eol])
	sp := bytes.LastIndexByte(line, ' ')
	if sp < 0 || !bytes.HasPrefix(line[sp+1:], []byte("HTTP/1.")) {
		return "", true // HTTP/2's preface, HTTP/0.9 or not HTTP
	}
	rest := b[eol+1:]
	for {
		eol := bytes.IndexByte(rest, '\n')
		if eol < 0 {
			return "", false
		}
		line := trimCR(rest[:eol])
		rest = rest[eol+1:]
		if len(line) == 0 {
			return "", true // end of headers without Host
		}
		if len(line) >= 5 && asciiEqualFold(line[:5], "host:") {
			return hostOnly(line[5:]), true
		}
	}
}

func trimCR(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\r' {
		return b[:len(b)-1]
	}
	return b
}

// asciiEqualFold reports whether b equals the lowercase ASCII lower, case
// folded.
func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// hostOnly returns the host of a Host header value: whitespace trimmed,
// port dropped, normalized by normalizeName ("" when it is not a plausible
// host name).
func hostOnly(v []byte) string {
	v = bytes.Trim(v, " \t")
	if len(v) > 0 && v[0] == '[' {
		return "" // an IPv6 literal: app files match host names only
	}
	if colon := bytes.IndexByte(v, ':'); colon >= 0 {
		v = v[:colon]
	}
	return normalizeName(v)
}
