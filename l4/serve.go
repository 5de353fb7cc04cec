package l4

import (
	"context"
	"log/slog"
	"net/netip"
	"syscall"
	"time"
)

// serve takes an accepted connection: it is served at once when its app is
// ready (serveReady), else by a goroutine of its own. self is the event
// loop when the loop accepted it, nil in an accept loop.
func (l *listener) serve(pc *proxyConn, self *eventLoop) {
	s := l.s
	if !s.track(pc) {
		if pc.client != nil {
			pc.client.Close()
		} else {
			syscall.Close(pc.cfd)
		}
		return
	}
	rs := l.routes.Load()
	if s.serveReady(pc, rs, self) {
		return
	}
	s.wg.Add(1)
	go s.serveConn(pc, l, rs)
}

// serveReady serves c from the accept loop when nothing has to be waited
// for: the address has a single default route, the Waker leases a ready
// backend at once (ReadyWaker) and the upstream accepts the connect within
// the connect call, as a running program on the loopback does. Then c goes
// to the event loop with no goroutine of its own: a warm connection costs
// the accept loop a lease, a socket and a connect (and a getsockname, for
// a PROXY header, which the loop sends first). A connect that does not complete at once (a full accept queue)
// is left to a goroutine that dials with the gate and the retries. It
// reports whether it took c; false leaves c untouched for serveConn. self
// is the event loop when it calls from its own thread (it accepted c).
func (s *Server) serveReady(c *proxyConn, rs *routeSet, self *eventLoop) bool {
	if c.cfd < 0 || rs.peek || rs.def < 0 {
		return false
	}
	rw, ok := s.Waker.(ReadyWaker)
	if !ok {
		return false
	}
	r := rs.routes[rs.def]
	upstream, release, ok := rw.TryWake(r.App)
	if !ok {
		return false
	}
	c.app, c.start = r.App, time.Now()
	// A zero timeout: only the poll that does not block.
	fd, err := connectRaw(s.ctx, upstream, 0)
	if err != nil {
		s.wg.Add(1)
		go s.serveLeased(c, r, upstream, release)
		return true
	}
	var pre []byte
	if r.ProxyProtocol != "" {
		if pre, err = preamble(c, r, nil); err != nil {
			s.logger().Warn("making the PROXY header failed, closing connection",
				slog.String("app", r.App), slog.Any("err", err))
			syscall.Close(fd)
			s.drop(c, release)
			return true
		}
	}
	loop, ok := s.splicingRaw(c, fd, pre, self)
	switch {
	case !ok:
		s.drop(c, release)
	case loop != nil && loop == self:
		// Accepted by the loop itself: registered now, no queue.
		c.release = release
		s.wg.Add(1) // done by the loop once c has ended
		loop.register(c.lc)
	case !s.handOver(c, loop, release):
		// No loop after all: the goroutines copy.
		s.wg.Add(1)
		go s.pipeRawLeased(c, r, fd, release, pre)
	}
	return true
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

// serveUpstream dials c's upstream and splices c to it, the PROXY header
// and the bytes peeked (if any) going first. On the event loops' data path
// the upstream is dialed with raw system calls, never entering Go's
// netpoller, and the loop sends the preamble. If no loop can be had (the
// goroutines' data path, or no loop could be started), the socket is
// wrapped in a *net.TCPConn and the goroutines copy (pipeRaw). conn, unless
// -1, is a connection to upstream the Waker made (see ConnWaker), used
// instead of a dial. p holds the bytes peeked from the client, if any; its
// buffer goes back to the pool here.
func (s *Server) serveUpstream(c *proxyConn, r Route, upstream netip.AddrPort, conn int, release func(), p *peeked) {
	fd := conn
	if fd >= 0 {
		// The Waker's connection (see ConnWaker): Nagle off, as on a dial.
		syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	} else {
		var ok bool
		if fd, release, ok = s.dialLeased(c, r, upstream, release); !ok {
			return
		}
	}
	pre, err := preamble(c, r, p.data)
	c.sent = int64(len(p.data))
	s.releasePeek(p)
	if err != nil {
		s.logger().Warn("making the PROXY header failed, closing connection",
			slog.String("app", r.App), slog.Any("err", err))
		syscall.Close(fd)
		s.drop(c, release)
		return
	}
	if s.DataPath == DataPathGoroutines {
		s.pipeRaw(c, r, fd, release, pre)
		return
	}
	loop, ok := s.splicingRaw(c, fd, pre, nil)
	if !ok {
		s.drop(c, release)
		return
	}
	if s.handOver(c, loop, release) {
		return
	}
	s.pipeRaw(c, r, fd, release, pre)
}

// serveLeased is serveUpstream for a connection whose lease the accept
// loop took (see serveReady).
func (s *Server) serveLeased(c *proxyConn, r Route, upstream netip.AddrPort, release func()) {
	defer s.wg.Done()
	s.serveUpstream(c, r, upstream, -1, release, &peeked{})
}
