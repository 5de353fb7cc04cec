package l4

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// listener is one listen address: its socket, its accept loop and the routes
// its connections are matched against.
type listener struct {
	s    *Server
	addr string // the table key
	ln   net.Listener
	// file is the listening socket when connections are accepted with
	// raw accept4 (see acceptRaw); ln is closed then, so that only file's
	// descriptor is in Go's netpoller.
	file   *os.File
	routes atomic.Pointer[routeSet]
	// accepting: the accept loop runs. A listener only bound (Bind) lets
	// the kernel queue connections until Apply starts it. Under s.mu.
	accepting bool

	// Rate limit of the "no app for this name" log.
	noMatchLast       atomic.Int64 // UnixNano of the last such log
	noMatchSuppressed atomic.Int64

	closeOnce sync.Once
	done      chan struct{} // closed when the listener is closed
}

// listen binds addr. Keep-alive is off: it costs setsockopt calls on every
// accepted connection, and a held connection's liveness is the client's
// business.
func (s *Server) listen(addr string, routes *routeSet) (*listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	l := &listener{s: s, addr: addr, ln: ln, done: make(chan struct{})}
	if tl, ok := ln.(*net.TCPListener); ok && s.DataPath != DataPathGoroutines {
		// net's listener refuses RawConn.Read; an os.File on a duplicate
		// allows it. Closing ln takes the original descriptor out of Go's
		// netpoller, which would otherwise be woken for every connection.
		if fd, err := dupFd(tl); err == nil {
			l.file = os.NewFile(uintptr(fd), addr)
			ln.Close()
		}
	}
	l.routes.Store(routes)
	return l, nil
}

// close stops accepting. Connections already accepted are left alone.
func (l *listener) close() {
	l.closeOnce.Do(func() {
		close(l.done)
		l.ln.Close()
		if l.file != nil {
			l.file.Close()
		}
	})
}

// acceptLoop accepts connections until the listener is closed. Any other
// Accept error (EMFILE, ENFILE, ECONNABORTED...) is taken as temporary: the
// loop backs off, doubling from AcceptBackoffMin to AcceptBackoffMax as
// net/http does, and keeps serving.
func (l *listener) acceptLoop() {
	s := l.s
	defer s.wg.Done()
	minDelay := durationOr(s.AcceptBackoffMin, DefaultAcceptBackoffMin)
	maxDelay := durationOr(s.AcceptBackoffMax, DefaultAcceptBackoffMax)
	logEvery := durationOr(s.ErrorLogInterval, DefaultErrorLogInterval)
	var (
		delay      time.Duration
		lastLog    time.Time
		suppressed int
		timer      *time.Timer
	)
	// With the event loop, connections are accepted with raw accept4
	// (see acceptRaw).
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
			if delay == 0 {
				delay = minDelay
			} else {
				delay = min(2*delay, maxDelay)
			}
			if now := time.Now(); now.Sub(lastLog) >= logEvery {
				s.logger().Warn("accepting connection failed, backing off",
					slog.String("listen", l.addr), slog.Any("error", err),
					slog.Duration("delay", delay), slog.Int("suppressed", suppressed))
				lastLog, suppressed = now, 0
			} else {
				suppressed++
			}
			if timer == nil {
				timer = time.NewTimer(delay)
			} else {
				timer.Reset(delay)
			}
			select {
			case <-timer.C:
			case <-l.done:
				timer.Stop()
				return
			}
			continue
		}
		delay = 0
		if pc == nil {
			continue
		}
		if !s.track(pc) {
			if pc.client != nil {
				pc.client.Close()
			} else {
				syscall.Close(pc.cfd)
			}
			continue
		}
		rs := l.routes.Load()
		if s.serveReady(pc, rs) {
			continue
		}
		s.wg.Add(1)
		go s.serveConn(pc, l, rs)
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
	tc, ok := c.(*net.TCPConn)
	if !ok {
		l.s.logger().Error("accepted a non-TCP connection", slog.String("listen", l.addr))
		c.Close()
		return nil, nil
	}
	return &proxyConn{s: l.s, client: tc, cfd: -1}, nil
}
