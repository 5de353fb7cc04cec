package l4

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
)

// serveGo is serveUpstream on the goroutines' data path: Go's dialer, the
// preamble written through Go, two goroutines to copy. It dials a
// connection of its own: one a ConnWaker handed over is closed.
func (s *Server) serveGo(c *proxyConn, r Route, upstream netip.AddrPort, conn int, release func(), p *peeked) {
	if conn >= 0 {
		syscall.Close(conn)
	}
	if !s.goClient(c) {
		s.drop(c, release)
		return
	}
	var up stream
	release, ok := s.dialLeased(c, r, upstream, release, func(a netip.AddrPort) (err error) {
		up, err = s.dialGo(s.ctx, targetOf(&r, a))
		return err
	})
	if !ok {
		return
	}
	pre, err := preamble(c, r, p.data)
	c.sent = int64(len(p.data))
	s.releasePeek(p)
	if err != nil {
		up.Close()
		s.dropPreamble(c, r, release, err)
		return
	}
	s.pipeGo(c, r, up, release, pre)
}

// pipeRaw copies c with goroutines on Go sockets, for when there is no
// event loop after all: the client and the raw upstream descriptor fd
// (taken over) are wrapped first.
func (s *Server) pipeRaw(c *proxyConn, r Route, fd int, release func(), pre []byte) {
	if !s.goClient(c) {
		syscall.Close(fd)
		s.drop(c, release)
		return
	}
	up, err := fileConn(fd)
	if err != nil {
		s.logger().Warn("wrapping the upstream socket failed, closing connection",
			slog.String("app", r.App), slog.Any("err", err))
		s.drop(c, release)
		return
	}
	s.pipeGo(c, r, up, release, pre)
}

// pipeRawLeased is pipeRaw in a goroutine of its own (see serveReady).
func (s *Server) pipeRawLeased(c *proxyConn, r Route, fd int, release func(), pre []byte) {
	defer s.wg.Done()
	s.pipeRaw(c, r, fd, release, pre)
}

// pipeGo writes pre to the upstream up, then copies c with goroutines.
func (s *Server) pipeGo(c *proxyConn, r Route, up stream, release func(), pre []byte) {
	if len(pre) > 0 {
		if _, err := up.Write(pre); err != nil {
			s.logger().Warn("sending first bytes to upstream failed, closing connection",
				slog.String("app", r.App), slog.Any("err", err))
			up.Close()
			s.drop(c, release)
			return
		}
	}
	if !s.markSpliced(c, up) {
		up.Close()
		s.drop(c, release)
		return
	}
	c.release = release
	c.pipeBoth(up)
}

// markSpliced records c's upstream, marking c as spliced, for the goroutines
// to copy; false if the server is shutting down, in which case the caller
// drops the connection.
func (s *Server) markSpliced(c *proxyConn, up stream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	c.upstream = up
	c.spliced = true
	s.watchLocked(c)
	return true
}

// pipeBoth copies c's directions with goroutines: the client-to-upstream
// one in this goroutine, the other in pipeUpstreamToClient.
func (c *proxyConn) pipeBoth(up stream) {
	c.pending.Store(2)
	c.s.wg.Add(1)
	go c.pipeUpstreamToClient()
	c.pipe(up, c.client, &c.sent)
}

// pipeUpstreamToClient is the second direction of a spliced connection.
func (c *proxyConn) pipeUpstreamToClient() {
	defer c.s.wg.Done()
	c.pipe(c.client, c.upstream, &c.received)
}

// pipe copies src to dst until EOF, then half-closes dst so the peer sees
// the same EOF while the other direction keeps flowing. An error (a reset,
// a write to a closed peer) aborts both sockets at once. The last direction
// to end closes both sockets and releases the lease. count receives the
// bytes copied, before the other direction can read it.
func (c *proxyConn) pipe(dst, src stream, count *int64) {
	var moved *atomic.Int64
	if c.counted {
		moved = &c.moved
	}
	n, err := c.s.copyConn(dst, src, moved)
	*count += n
	if err != nil && !c.quietClosed.Load() {
		c.abort()
	} else {
		dst.CloseWrite()
	}
	if c.pending.Add(-1) == 0 {
		c.finish()
	}
}

// abort resets both sockets (SO_LINGER 0), so that a reset on one side is
// passed to the other and the other direction's blocked read returns.
func (c *proxyConn) abort() {
	if c.aborted.Swap(true) {
		return
	}
	setLinger0(c.client)
	setLinger0(c.upstream)
	c.client.Close()
	c.upstream.Close()
}

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
// (stream).ReadFrom once a read fills the whole buffer: only bulk
// transfers pay for the pipe. It switches on a full read, not on a byte
// count, so long keep-alive connections of small messages never switch.
// moved, when not nil, is added every read's bytes as they pass (a watched
// connection, quiet.go), and the copy then stays on read/write: splice
// through ReadFrom would count nothing until the end.
func (s *Server) copyConn(dst, src stream, moved *atomic.Int64) (int64, error) {
	bp := s.getBuf()
	buf := *bp
	var written int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 && moved != nil {
			moved.Add(int64(nr))
		}
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
		if nr == len(buf) && moved == nil {
			s.bufs.Put(bp)
			n, err := bulkCopy(dst, src)
			return written + n, err
		}
	}
}

// bulkCopy copies src to dst to the end with splice(2) where Go offers it:
// TCPConn.ReadFrom takes a TCP or Unix source, TCPConn.WriteTo a Unix
// destination; between two Unix sockets it is a plain copy.
func bulkCopy(dst, src stream) (int64, error) {
	if tc, ok := dst.(*net.TCPConn); ok {
		return tc.ReadFrom(src)
	}
	if tc, ok := src.(*net.TCPConn); ok {
		return tc.WriteTo(dst)
	}
	return io.Copy(dst, src)
}

// setLinger0 makes closing a TCP socket send a reset. A Unix socket has
// no linger: closing it with bytes unread resets its peer already.
func setLinger0(c stream) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
}
