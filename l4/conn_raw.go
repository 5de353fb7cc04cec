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

// serveLeased is serveUpstream for a connection whose lease the accept
// loop took (see serveReady).
func (s *Server) serveLeased(c *proxyConn, r Route, upstream netip.AddrPort, release func()) {
	defer s.wg.Done()
	s.serveUpstream(c, r, upstream, -1, release, &peeked{})
}

// pipeRawLeased is pipeRaw in a goroutine of its own (see serveReady).
func (s *Server) pipeRawLeased(c *proxyConn, r Route, fd int, release func(), pre []byte) {
	defer s.wg.Done()
	s.pipeRaw(c, r, fd, release, pre)
}

// pipeRaw copies c with goroutines on Go sockets, for when there is no
// event loop: the client and the raw upstream descriptor fd (taken over)
// are wrapped first, and pre is written to the upstream before the copy
// starts.
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
	if len(pre) > 0 {
		if _, err := up.Write(pre); err != nil {
			s.logger().Warn("sending first bytes to upstream failed, closing connection",
				slog.String("app", r.App), slog.Any("err", err))
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
	c.pipeBoth(up)
}

// splicing records c's upstream, marking c as spliced, for the goroutines
// to copy; false if the server is shutting down, in which case the caller
// drops the connection.
func (s *Server) splicing(c *proxyConn, up *net.TCPConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	c.upstream = up
	c.spliced = true
	return true
}

// splicingRaw gives c and its upstream's descriptor upfd to an event loop:
// it marks c as spliced and returns the loop with c.lc set, taking
// ownership of upfd; the loop sends pre to the upstream before any of the
// client's bytes. It returns a nil loop, leaving upfd to the caller, when
// there is no loop (the caller then copies with pipeRaw); false, with upfd
// closed, if the server is shutting down. self, when not nil, is the loop
// calling (it accepted c), which keeps c; otherwise the loops take turns.
func (s *Server) splicingRaw(c *proxyConn, upfd int, pre []byte, self *eventLoop) (*eventLoop, bool) {
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
			if pre != nil {
				// Pending as after a partial write: flushed first.
				c.lc.dir[0].pend, c.lc.dir[0].pendBuf = pre, pre
			}
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

// addrs returns the client's address and the address it connected to,
// for a PROXY header.
func (c *proxyConn) addrs() (src, dst netip.AddrPort, err error) {
	if c.client != nil {
		return c.client.RemoteAddr().(*net.TCPAddr).AddrPort(), c.client.LocalAddr().(*net.TCPAddr).AddrPort(), nil
	}
	sa, err := syscall.Getsockname(c.cfd)
	if err != nil {
		return src, dst, os.NewSyscallError("getsockname", err)
	}
	return c.remote, sockaddrAddrPort(sa), nil
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
	return &proxyConn{s: s, cfd: nfd, remote: sockaddrAddrPort(sa)}
}

// sockaddrAddrPort converts an address a system call returned; the zero
// AddrPort for a family other than IPv4 and IPv6.
func sockaddrAddrPort(sa syscall.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *syscall.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	return netip.AddrPort{}
}
