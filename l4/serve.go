package l4

import (
	"net/netip"
	"syscall"
	"time"
)

// serve takes an accepted connection: it is served at once when its app is
// ready (serveReady), else by a goroutine of its own (serveHeld). self is
// the event loop when the loop accepted it, nil in an accept loop.
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
	go s.serveHeld(pc, l, rs)
}

// serveReady takes c through every step on the accepting thread when
// nothing has to be waited for: the address has a single default route,
// the Waker leases a ready backend at once (ReadyWaker) and the upstream
// accepts the connect within the connect call, as a running program on
// the loopback does. Then c goes to the event loop with no goroutine of its
// own: a warm connection costs the accept loop a lease, a socket and a
// connect (and a getsockname, for a PROXY header). A connect that does not
// complete at once (a full accept queue) is left to a goroutine that dials
// with the gate and the retries. It reports whether it took c; false
// leaves c untouched for serveHeld. self is the event loop when it calls
// from its own thread (it accepted c).
func (s *Server) serveReady(c *proxyConn, rs *routeSet, self *eventLoop) bool {
	// Route: the address's default route, without reading anything.
	if c.cfd < 0 || rs.peek || rs.def < 0 {
		return false
	}
	rw, ok := s.Waker.(ReadyWaker)
	if !ok {
		return false
	}
	r := &rs.routes[rs.def]
	// Wake: only an app that is ready now; a source that may not wake it
	// gets a lease that does not keep it up either.
	var (
		upstream netip.AddrPort
		release  func()
	)
	if c.mayWake(r) {
		upstream, release, ok = rw.TryWake(r.App)
	} else {
		upstream, release, ok = s.tryPassive(r.App)
		c.passive = true
	}
	if !ok {
		c.passive = false
		return false
	}
	c.app, c.start, c.up, c.accessLog = r.App, time.Now(), upstream, r.AccessLog
	c.watch(r)
	// Dial: a zero timeout, only the poll that does not block.
	fd, err := connectRaw(s.ctx, targetOf(r, upstream), 0)
	if err != nil {
		s.wg.Add(1)
		go s.serveLeased(c, *r, upstream, release)
		return true
	}
	// Preamble: a PROXY header at most, as nothing was peeked.
	var pre []byte
	if r.ProxyProtocol != "" {
		if pre, err = preamble(c, *r, nil); err != nil {
			syscall.Close(fd)
			s.dropPreamble(c, *r, release, err)
			return true
		}
	}
	// Splice, on this very loop when it accepted c.
	if !s.splice(c, fd, pre, release, self) {
		s.wg.Add(1)
		go s.pipeRawLeased(c, *r, fd, release, pre)
	}
	return true
}

// serveHeld takes c through the steps in a goroutine of its own, for
// everything that may have to wait: the client's first bytes on an address
// shared by name, the app's start, a connect to retry. On an address with
// a single default route the client's bytes are not read before the
// splice: they wait in the kernel while the app wakes.
func (s *Server) serveHeld(c *proxyConn, l *listener, rs *routeSet) {
	defer s.wg.Done()
	r, p, ok := s.route(c, l, rs)
	if !ok {
		return
	}
	defer s.releasePeek(&p)
	if !c.mayWake(&r) {
		// Served only while the app runs, without keeping it up.
		upstream, release, ok := s.tryPassive(r.App)
		if !ok {
			s.turnAway(c, r)
			return
		}
		c.app, c.start, c.passive = r.App, time.Now(), true
		s.serveUpstream(c, r, upstream, -1, release, &p)
		return
	}
	upstream, conn, release, ok := s.wake(c, r)
	if !ok {
		return
	}
	s.serveUpstream(c, r, upstream, conn, release, &p)
}

// serveUpstream takes c, whose app is woken, through the last steps: dial
// the upstream (or take conn, the connection a ConnWaker handed over, when
// it is not -1), then splice c to it, the PROXY header and the bytes peeked
// (p, whose buffer goes back to the pool here) going first. The event loop
// carries the connection; the goroutines copy it on their data path
// (serveGo) or when no loop can be had (pipeRaw).
func (s *Server) serveUpstream(c *proxyConn, r Route, upstream netip.AddrPort, conn int, release func(), p *peeked) {
	c.up = upstream
	c.watch(&r)
	if s.DataPath == DataPathGoroutines {
		s.serveGo(c, r, upstream, conn, release, p)
		return
	}
	fd, release, ok := s.dialUpstream(c, r, upstream, conn, release)
	if !ok {
		return
	}
	pre, err := preamble(c, r, p.data)
	c.sent = int64(len(p.data))
	s.releasePeek(p)
	if err != nil {
		syscall.Close(fd)
		s.dropPreamble(c, r, release, err)
		return
	}
	if !s.splice(c, fd, pre, release, nil) {
		s.pipeRaw(c, r, fd, release, pre)
	}
}

// serveLeased is serveUpstream, in a goroutine of its own, for a
// connection whose lease the accept loop took (see serveReady).
func (s *Server) serveLeased(c *proxyConn, r Route, upstream netip.AddrPort, release func()) {
	defer s.wg.Done()
	s.serveUpstream(c, r, upstream, -1, release, &peeked{})
}
