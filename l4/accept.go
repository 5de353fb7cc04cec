package l4

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// acceptLoop accepts connections until the listener is closed, when the
// event loop does not accept for it. Any other Accept error (EMFILE,
// ENFILE, ECONNABORTED...) is taken as temporary: the loop backs off (see
// backoff) and keeps serving.
func (l *listener) acceptLoop() {
	s := l.s
	defer s.wg.Done()
	var timer *time.Timer
	// Without the event loop but with a raw descriptor, connections are
	// accepted with raw accept4 (see acceptRaw).
	var rc syscall.RawConn
	if l.file != nil {
		if r, err := l.file.SyscallConn(); err == nil {
			rc = r
		}
	}
	for {
		pc, err := l.accept(rc)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-l.done:
				return
			default:
			}
			if !l.waitBackoff(&timer, err) {
				return
			}
			continue
		}
		l.accepted()
		if pc == nil {
			continue
		}
		l.serve(pc, nil)
	}
}

// accept returns the next connection: through accept4 when rc is set,
// through the net.Listener otherwise. A nil connection with a nil error
// means one was accepted and closed.
func (l *listener) accept(rc syscall.RawConn) (*proxyConn, error) {
	if rc != nil {
		return l.acceptRaw(rc)
	}
	c, err := l.ln.Accept()
	if err != nil {
		return nil, err
	}
	st, ok := c.(stream)
	if !ok {
		l.s.logger().Error("accepted a connection that is not a stream socket", slog.String("listen", l.addr))
		c.Close()
		return nil, nil
	}
	_, unix := c.(*net.UnixConn)
	return &proxyConn{s: l.s, client: st, cfd: -1, unix: unix}, nil
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
	if _, unix := sa.(*syscall.SockaddrUnix); unix {
		return &proxyConn{s: s, cfd: nfd, unix: true}
	}
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

// waitBackoff waits l's backoff for err on *timer (made on first use) and
// reports false when l is closed meanwhile.
func (l *listener) waitBackoff(timer **time.Timer, err error) bool {
	delay := l.backoff(err)
	if *timer == nil {
		*timer = time.NewTimer(delay)
	} else {
		(*timer).Reset(delay)
	}
	select {
	case <-(*timer).C:
		return true
	case <-l.done:
		(*timer).Stop()
		return false
	}
}

// backoff returns the pause after one more failed accept, doubling from
// AcceptBackoffMin to AcceptBackoffMax as net/http does, and logs the
// failure (rate-limited to one line per ErrorLogInterval). Called by
// whoever accepts for l: its accept loop or the event loop.
func (l *listener) backoff(err error) time.Duration {
	s := l.s
	l.bmu.Lock()
	defer l.bmu.Unlock()
	l.failing.Store(true)
	if l.delay == 0 {
		l.delay = durationOr(s.AcceptBackoffMin, DefaultAcceptBackoffMin)
	} else {
		l.delay = min(2*l.delay, durationOr(s.AcceptBackoffMax, DefaultAcceptBackoffMax))
	}
	if now := time.Now(); now.Sub(l.lastLog) >= durationOr(s.ErrorLogInterval, DefaultErrorLogInterval) {
		s.logger().Warn("accepting connection failed, backing off",
			slog.String("listen", l.addr), slog.Any("err", err),
			slog.Duration("delay", l.delay), slog.Int("suppressed", l.suppressed))
		l.lastLog, l.suppressed = now, 0
	} else {
		l.suppressed++
	}
	return l.delay
}

// accepted resets the backoff after a connection was accepted: one atomic
// load on the way of every connection, the lock only after a failure.
func (l *listener) accepted() {
	if l.failing.Load() {
		l.bmu.Lock()
		l.delay = 0
		l.failing.Store(false)
		l.bmu.Unlock()
	}
}
