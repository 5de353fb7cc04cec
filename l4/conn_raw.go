package l4

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// serveRaw dials upstream with raw system calls and hands c to the event
// loop: the plain path (no PROXY header, no peeked bytes) when the loop
// carries spliced connections. The upstream socket never enters Go's
// netpoller. If the loop cannot be had, the socket is wrapped in a
// *net.TCPConn and the goroutines copy, as on the other path. conn, unless
// -1, is a connection to upstream the Waker made (see ConnWaker), used
// instead of a dial.
func (s *Server) serveRaw(c *proxyConn, r Route, upstream netip.AddrPort, conn int, release func()) {
	fd := conn
	if fd >= 0 {
		// The Waker's connection (see ConnWaker): Nagle off, as on a dial.
		syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	} else {
		var ok bool
		release, ok = s.dialLeased(c, r, upstream, release, func(up netip.AddrPort) (err error) {
			fd, err = s.dialRaw(s.ctx, up)
			return err
		})
		if !ok {
			return
		}
	}
	loop, ok := s.splicingRaw(c, fd, nil)
	if !ok {
		s.drop(c, release)
		return
	}
	if s.handOver(c, loop, release) {
		return
	}
	s.pipeRaw(c, r, fd, release)
}

// serveReady serves c from the accept loop when nothing has to be waited
// for: the address has a single default route without a PROXY header, the
// Waker leases a ready backend at once (ReadyWaker) and the upstream
// accepts the connect within the connect call, as a running program on the
// loopback does. Then c goes to the event loop with no goroutine of its
// own: a warm connection costs the accept loop a lease, a socket and a
// connect. A connect that does not complete at once (a full accept queue)
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
	if r.ProxyProtocol != "" {
		return false
	}
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
	loop, ok := s.splicingRaw(c, fd, self)
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
		go s.pipeRawLeased(c, r, fd, release)
	}
	return true
}

// serveLeased is serveRaw for a connection whose lease the accept loop
// took (see serveReady).
func (s *Server) serveLeased(c *proxyConn, r Route, upstream netip.AddrPort, release func()) {
	defer s.wg.Done()
	s.serveRaw(c, r, upstream, -1, release)
}

// pipeRawLeased is pipeRaw in a goroutine of its own (see serveReady).
func (s *Server) pipeRawLeased(c *proxyConn, r Route, fd int, release func()) {
	defer s.wg.Done()
	s.pipeRaw(c, r, fd, release)
}

// pipeRaw copies c with goroutines on Go sockets, for when there is no
// event loop: the client and the raw upstream descriptor fd (taken over)
// are wrapped first.
func (s *Server) pipeRaw(c *proxyConn, r Route, fd int, release func()) {
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
	if _, ok := s.splicing(c, up); !ok {
		up.Close()
		s.drop(c, release)
		return
	}
	c.pipeBoth(up)
}

// splicingRaw is splicing for an upstream dialed by dialRaw: it marks c as
// spliced and returns the event loop with c.lc set, taking ownership of
// upfd. It returns a nil loop, leaving upfd to the caller, when there is no
// loop (the caller then wraps upfd and calls splicing); false, with upfd
// closed, if the server is shutting down. self, when not nil, is the loop
// calling (it accepted c), which keeps c; otherwise the loops take turns.
func (s *Server) splicingRaw(c *proxyConn, upfd int, self *eventLoop) (*eventLoop, bool) {
	// A raw client is handed over as it is; a Go one is duplicated (see
	// dupFd).
	cfd := c.cfd
	var dupErr error
	if c.client != nil {
		cfd, dupErr = dupFd(c.client)
	}
	s.mu.Lock()
	closed := s.closed
	var l *eventLoop
	if !closed && dupErr == nil {
		if l = s.eventLoopLocked(self); l != nil {
			c.spliced = true
			c.lc = &loopConn{pc: c, fd: [2]int{cfd, upfd}, loop: l}
			c.cfd = -1
		}
	}
	s.mu.Unlock()
	if l != nil {
		if c.client != nil {
			c.client.Close()
		}
		return l, true
	}
	if c.client != nil && cfd >= 0 {
		syscall.Close(cfd)
	}
	if closed {
		syscall.Close(upfd)
		return nil, false
	}
	return nil, true
}

// fileConn wraps fd, which it takes over, in a *net.TCPConn.
func fileConn(fd int) (*net.TCPConn, error) {
	f := os.NewFile(uintptr(fd), "upstream")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("wrapping a socket: %w", err)
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("wrapping a socket: not TCP")
	}
	return tc, nil
}

// goClient gives c a Go socket for its client if it has a raw descriptor,
// for the paths that read, write or wait on the client through Go (peeking,
// replies, PROXY headers, the goroutine copy). False if that failed; the
// descriptor is closed then.
func (s *Server) goClient(c *proxyConn) bool {
	if c.client != nil {
		return true
	}
	// Under s.mu: Shutdown shuts down held clients' descriptors.
	s.mu.Lock()
	defer s.mu.Unlock()
	tc, err := fileConn(c.cfd)
	c.cfd = -1
	if err != nil {
		s.logger().Warn("wrapping the client socket failed, closing connection", slog.Any("err", err))
		return false
	}
	c.client = tc
	return true
}

// clientAddr is the client's address for logs.
func (c *proxyConn) clientAddr() string {
	if c.client != nil {
		return c.client.RemoteAddr().String()
	}
	return c.remote.String()
}

// acceptRaw accepts one connection with accept4 on the listener's
// descriptor, waiting on Go's netpoller for the listener only. The accepted
// socket stays out of Go's netpoller (no epoll registration, no
// getsockname), for connections the event loop will carry.
func (l *listener) acceptRaw(rc syscall.RawConn) (*proxyConn, error) {
	var (
		nfd  int
		sa   syscall.Sockaddr
		aerr error
	)
	err := rc.Read(func(fd uintptr) bool {
		for {
			nfd, sa, aerr = syscall.Accept4(int(fd), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
			switch aerr {
			case syscall.EINTR, syscall.ECONNABORTED:
				continue
			case syscall.EAGAIN:
				return false // wait for the listener to be readable
			}
			return true
		}
	})
	if err != nil {
		return nil, err
	}
	if aerr != nil {
		return nil, os.NewSyscallError("accept4", aerr)
	}
	return l.s.rawConn(nfd, sa), nil
}

// rawConn is a connection for a socket accept4 returned, with the peer
// address it gave.
func (s *Server) rawConn(nfd int, sa syscall.Sockaddr) *proxyConn {
	// As Go does for accepted sockets: small answers must not wait.
	syscall.SetsockoptInt(nfd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	pc := &proxyConn{s: s, cfd: nfd}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		pc.remote = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *syscall.SockaddrInet6:
		pc.remote = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	return pc
}
