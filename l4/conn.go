package l4

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"
)

// proxyConn is one accepted connection, from accept to its last byte.
type proxyConn struct {
	s      *Server
	client *net.TCPConn
	// upstream is set, under s.mu, once the connection is spliced; nil
	// while it is held (routing, waking, dialing).
	upstream *net.TCPConn
	app      string
	release  func()
	start    time.Time

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

// splicing records c's upstream, marking c as spliced; false if the server
// is shutting down, in which case the caller drops the connection.
func (s *Server) splicing(c *proxyConn, upstream *net.TCPConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	c.upstream = upstream
	return true
}

// route picks the route of a new connection among the routes of its listen
// address: the default route (no SNI, no Host). Until SNI and Host are
// peeked, an address without a default route uses its first route.
func route(routes []Route) (Route, bool) {
	for _, r := range routes {
		if len(r.SNI) == 0 && len(r.Host) == 0 {
			return r, true
		}
	}
	if len(routes) > 0 {
		return routes[0], true
	}
	return Route{}, false
}

// serveConn routes c, wakes its app without reading the client's bytes (they
// wait in the kernel), dials the upstream and splices: the client-to-upstream
// direction runs in this goroutine, the other in pipeUpstreamToClient.
func (s *Server) serveConn(c *proxyConn, routes *[]Route) {
	defer s.wg.Done()
	log := s.logger()
	r, ok := route(*routes)
	if !ok {
		log.Warn("no route for connection", slog.String("client", c.client.RemoteAddr().String()))
		s.drop(c, nil)
		return
	}
	c.app = r.App
	c.start = time.Now()
	upstream, release, err := s.Waker.Wake(s.ctx, r.App)
	if err != nil {
		level := slog.LevelWarn
		if s.ctx.Err() != nil {
			level = slog.LevelInfo // shutting down: expected
		}
		log.Log(context.Background(), level, "waking app failed, closing connection",
			slog.String("app", r.App), slog.Any("error", err))
		s.drop(c, nil)
		return
	}
	up, err := s.dial(s.ctx, upstream)
	if err != nil {
		level := slog.LevelWarn
		if s.ctx.Err() != nil {
			level = slog.LevelInfo
		}
		log.Log(context.Background(), level, "dialing upstream failed, closing connection",
			slog.String("app", r.App), slog.String("upstream", upstream.String()), slog.Any("error", err))
		s.drop(c, release)
		return
	}
	if r.ProxyProtocol != "" {
		if err := writeProxyHeader(up, c.client, r.ProxyProtocol); err != nil {
			log.Warn("sending proxy protocol header failed, closing connection",
				slog.String("app", r.App), slog.Any("error", err))
			up.Close()
			s.drop(c, release)
			return
		}
	}
	if !s.splicing(c, up) {
		up.Close()
		s.drop(c, release)
		return
	}
	c.release = release
	c.pending.Store(2)
	s.wg.Add(1)
	go c.pipeUpstreamToClient()
	c.pipe(up, c.client, &c.sent)
}

// drop ends a connection that never got spliced.
func (s *Server) drop(c *proxyConn, release func()) {
	c.client.Close()
	if release != nil {
		release()
	}
	s.untrack(c)
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
	*count = n
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
	c.client.Close()
	if c.upstream != nil {
		c.upstream.Close()
	}
}

// finish runs once, after both directions ended.
func (c *proxyConn) finish() {
	c.client.Close()
	c.upstream.Close()
	c.release()
	c.s.untrack(c)
	if o := c.s.Observer; o != nil {
		o.ConnectionClosed(c.app, c.sent, c.received)
	}
	if log := c.s.logger(); log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("connection closed", slog.String("app", c.app),
			slog.String("client", c.client.RemoteAddr().String()),
			slog.Int64("sent", c.sent), slog.Int64("received", c.received),
			slog.Bool("reset", c.aborted.Load()),
			slog.Duration("duration", time.Since(c.start)))
	}
}

// writeProxyHeader tells upstream where client's connection came from,
// before any of the client's bytes.
func writeProxyHeader(upstream, client *net.TCPConn, version string) error {
	src := client.RemoteAddr().(*net.TCPAddr).AddrPort()
	dst := client.LocalAddr().(*net.TCPAddr).AddrPort()
	hdr, err := appendProxyHeader(make([]byte, 0, 64), version, src, dst)
	if err != nil {
		return err
	}
	if _, err := upstream.Write(hdr); err != nil {
		return fmt.Errorf("writing proxy protocol header: %w", err)
	}
	return nil
}
