package l4

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
)

// proxyConn is one accepted connection, from accept to its last byte.
type proxyConn struct {
	s *Server
	// client is the client's socket, or nil while the client is the raw
	// descriptor cfd (see acceptRaw).
	client *net.TCPConn
	// cfd is the client's raw descriptor, -1 once it is owned elsewhere
	// (wrapped in client, or handed to the loop). While c is tracked and
	// not spliced it is changed and closed only under s.mu or after
	// untrack, so that Shutdown can shut it down under s.mu.
	cfd int
	// remote is the client's address as accept returned it, for raw
	// clients.
	remote netip.AddrPort
	// upstream is set, under s.mu, once the connection is spliced; nil
	// while it is held (routing, waking, dialing).
	upstream *net.TCPConn
	// spliced is set, under s.mu, once the connection is spliced (to the
	// event loop or to goroutines).
	spliced bool
	// lc is set, under s.mu, when the event loop moves c's bytes.
	lc      *loopConn
	app     string
	release func()
	start   time.Time

	// pending counts the directions still copying: the one that brings it
	// to zero closes both sockets and releases the lease.
	pending atomic.Int32
	aborted atomic.Bool
	// Bytes copied per direction, each written only by its own direction
	// and read after pending reached zero.
	sent, received int64
}

// track registers c for Shutdown; false if the server is shutting down.
func (s *Server) track(c *proxyConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *proxyConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// serveConn routes c, wakes its app, then dials the upstream and splices
// (serveUpstream). On an address with a single default route the client's
// bytes are not read before the splice (they wait in the kernel while the
// app wakes); on an address shared by name they are peeked first and sent
// to the upstream ahead of the rest.
func (s *Server) serveConn(c *proxyConn, l *listener, rs *routeSet) {
	defer s.wg.Done()
	log := s.logger()
	var p peeked
	idx := rs.def
	if rs.peek && !s.goClient(c) {
		s.drop(c, nil)
		return
	}
	if rs.peek {
		var err error
		p, err = s.peek(c.client)
		if err != nil {
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug("closing connection that named no app in time", slog.String("listen", l.addr),
					slog.String("client", c.client.RemoteAddr().String()), slog.Any("err", err))
			}
			s.drop(c, nil)
			return
		}
		defer s.releasePeek(&p)
		// The routes may have been reloaded while the client was sending.
		rs = l.routes.Load()
		idx = rs.match(p.proto, p.name)
	}
	if idx < 0 {
		if !s.goClient(c) {
			s.drop(c, nil)
			return
		}
		l.logNoMatch(c, p)
		s.drop(c, nil)
		return
	}
	r := rs.routes[idx]
	c.app = r.App
	c.start = time.Now()
	upstream, conn, release, err := s.wake(r.App)
	if err != nil {
		s.logDrop("waking app failed, closing connection", slog.String("app", r.App), slog.Any("err", err))
		s.dropUnavailable(c, nil, r.UnavailableReply)
		return
	}
	s.serveUpstream(c, r, upstream, conn, release, &p)
}

// wake is the Waker's Wake, with the connection to the upstream a
// ConnWaker hands over (-1 when none).
func (s *Server) wake(app string) (netip.AddrPort, int, func(), error) {
	if cw, ok := s.Waker.(ConnWaker); ok {
		return cw.WakeConn(s.ctx, app)
	}
	up, release, err := s.Waker.Wake(s.ctx, app)
	return up, -1, release, err
}

// handOver makes release c's to call when it ends and, when there is a
// loop, gives c to it: the loop then closes the sockets and calls release.
// It reports whether the loop took c.
func (s *Server) handOver(c *proxyConn, loop *eventLoop, release func()) bool {
	c.release = release
	if loop == nil {
		return false
	}
	s.wg.Add(1) // done by the loop once c has ended
	loop.add(c.lc)
	return true
}

// pipeBoth copies c's directions with goroutines: the client-to-upstream
// one in this goroutine, the other in pipeUpstreamToClient.
func (c *proxyConn) pipeBoth(up *net.TCPConn) {
	c.pending.Store(2)
	c.s.wg.Add(1)
	go c.pipeUpstreamToClient()
	c.pipe(up, c.client, &c.sent)
}

// drop ends a connection that never got spliced.
func (s *Server) drop(c *proxyConn, release func()) {
	if c.client != nil {
		c.client.Close()
	}
	if release != nil {
		release()
	}
	s.untrack(c)
	if c.cfd >= 0 {
		syscall.Close(c.cfd) // untracked: Shutdown no longer sees it
		c.cfd = -1
	}
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
func (c *proxyConn) pipe(dst, src *net.TCPConn, count *int64) {
	n, err := c.s.copyConn(dst, src)
	*count += n
	if err != nil {
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
	c.client.SetLinger(0)
	c.upstream.SetLinger(0)
	c.client.Close()
	c.upstream.Close()
}

// closeBoth closes the connection's sockets; Shutdown uses it to cut
// connections still open when its context ends.
func (c *proxyConn) closeBoth() {
	if c.lc != nil {
		// The loop owns the descriptors until it hands c back.
		c.lc.loop.cut(c.lc)
		return
	}
	if c.client == nil {
		syscall.Shutdown(c.cfd, syscall.SHUT_RDWR)
		return
	}
	c.client.Close()
	if c.upstream != nil {
		c.upstream.Close()
	}
}

// finish runs once, after both directions ended.
func (c *proxyConn) finish() {
	if c.client != nil {
		c.client.Close()
	}
	if c.upstream != nil {
		c.upstream.Close()
	}
	c.release()
	c.s.untrack(c)
	if o := c.s.Observer; o != nil {
		o.ConnectionClosed(c.app, c.sent, c.received)
	}
	if log := c.s.logger(); log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("connection closed", slog.String("app", c.app),
			slog.String("client", c.clientAddr()),
			slog.Int64("sent", c.sent), slog.Int64("received", c.received),
			slog.Bool("reset", c.aborted.Load()),
			slog.Duration("duration", time.Since(c.start)))
	}
}

// preamble returns what goes to the upstream ahead of the client's unread
// bytes: the PROXY protocol header of r (if any), telling the upstream
// where the client's connection came from, then the bytes peeked from the
// client; nil when there is neither. It is a copy, so that the peeked
// bytes' buffer can go back to its pool at once.
func preamble(c *proxyConn, r Route, peeked []byte) ([]byte, error) {
	if r.ProxyProtocol == "" && len(peeked) == 0 {
		return nil, nil
	}
	pre := make([]byte, 0, maxProxyHeaderLen+len(peeked))
	if r.ProxyProtocol != "" {
		src, dst, err := c.addrs()
		if err != nil {
			return nil, err
		}
		if pre, err = appendProxyHeader(pre, r.ProxyProtocol, src, dst); err != nil {
			return nil, err
		}
	}
	return append(pre, peeked...), nil
}
