package l4

import (
	"io"
	"net"
)

// bufSize is the size of the pooled copy buffers. A read that fills a whole
// buffer marks its direction as bulk.
const bufSize = 32 << 10

func (s *Server) getBuf() *[]byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, bufSize)
	return &b
}

// copyConn copies src to dst until EOF (nil error) or an error. It starts
// with read/write through a pooled buffer, which costs the fewest system
// calls for small exchanges, and switches to splice(2) through
// (*net.TCPConn).ReadFrom once a read fills the whole buffer: only bulk
// transfers pay for the pipe. It switches on a full read, not on a byte
// count, so long keep-alive connections of small messages never switch.
func (s *Server) copyConn(dst, src *net.TCPConn) (int64, error) {
	bp := s.getBuf()
	buf := *bp
	var written int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			written += int64(nw)
			if werr != nil {
				s.bufs.Put(bp)
				return written, werr
			}
		}
		if rerr != nil {
			s.bufs.Put(bp)
			if rerr == io.EOF {
				return written, nil
			}
			return written, rerr
		}
		if nr == len(buf) {
			s.bufs.Put(bp)
			n, err := dst.ReadFrom(src)
			return written + n, err
		}
	}
}
