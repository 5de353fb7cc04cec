package l4

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// DefaultPeekTimeout bounds how long a connection on a shared address may
// take to send the bytes that name its app.
const DefaultPeekTimeout = 5 * time.Second

// Peek limits: a ClientHello fits in one 16 KiB record in practice (even
// with post-quantum key shares it is about 2 KiB), and a request line with
// headers up to Host fits in 8 KiB (net/http's default is 1 MiB for all
// headers, but Host comes early). A client that sends more without naming
// its app goes to the default route.
const (
	maxPeekTLS  = tlsRecordHeaderLen + tlsMaxFragment
	maxPeekHTTP = 8 << 10
	// peekBufSize is the pooled buffer a peek starts with; larger hellos
	// grow it up to the limit.
	peekBufSize = 4 << 10
)

// peekProto is the protocol a peek recognised, which picks the name table.
type peekProto uint8

const (
	protoTLS  peekProto = iota + 1 // first byte 0x16: a TLS handshake record
	protoHTTP                      // anything else is taken for HTTP/1.x
)

func (p peekProto) String() string {
	if p == protoTLS {
		return "sni"
	}
	return "host"
}

// errPeekEOF is a client that closed before naming its app.
var errPeekEOF = errors.New("client closed before sending a name")

// peeked is what a peek read from the client: bytes to send to the upstream
// first, and the name they carry.
type peeked struct {
	buf   *[]byte // pooled buffer, returned by release
	data  []byte
	proto peekProto
	name  string
}

func (s *Server) getPeekBuf() *[]byte {
	if b, ok := s.peekBufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, peekBufSize)
	return &b
}

// release returns p's buffer to the pool; p.data is invalid afterwards.
func (s *Server) releasePeek(p *peeked) {
	if p.buf != nil {
		s.peekBufs.Put(p.buf)
		p.buf, p.data = nil, nil
	}
}

// peek reads from client until its first bytes name an app (a TLS
// ClientHello's server name, an HTTP/1.x Host header) or show they never
// will, within PeekTimeout from now overall, so that a client trickling
// bytes cannot hold the connection longer than a silent one. The bytes read
// are kept, to be sent to the upstream unchanged. A timeout or a close
// before the name is decided is an error: the connection is dropped without
// waking anything.
func (s *Server) peek(client stream) (peeked, error) {
	timeout := durationOr(s.PeekTimeout, DefaultPeekTimeout)
	if err := client.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return peeked{}, fmt.Errorf("peeking: %w", err)
	}
	p := peeked{buf: s.getPeekBuf()}
	buf := (*p.buf)[:0]
	limit := maxPeekHTTP
	for {
		if len(buf) == cap(buf) {
			// Rare: a hello or headers larger than the pooled buffer.
			grown := make([]byte, len(buf), limit)
			copy(grown, buf)
			buf = grown
		}
		n, err := client.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n > 0 {
			p.data = buf
			var done bool
			if buf[0] == tlsRecordHandshake {
				p.proto, limit = protoTLS, maxPeekTLS
				p.name, done = sniffTLS(buf)
			} else {
				p.proto, limit = protoHTTP, maxPeekHTTP
				p.name, done = sniffHTTP(buf)
			}
			if !done && len(buf) >= limit {
				p.name, done = "", true
			}
			if done {
				break
			}
		}
		if err != nil {
			s.releasePeek(&p)
			if errors.Is(err, io.EOF) {
				err = errPeekEOF
			}
			return peeked{}, fmt.Errorf("peeking: %w", err)
		}
	}
	if err := client.SetReadDeadline(time.Time{}); err != nil {
		s.releasePeek(&p)
		return peeked{}, fmt.Errorf("peeking: %w", err)
	}
	return p, nil
}
