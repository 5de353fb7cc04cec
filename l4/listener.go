package l4

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// listener is one listen address: its socket, its accept loop and the routes
// its connections are matched against.
type listener struct {
	s      *Server
	addr   string // the table key
	ln     net.Listener
	routes atomic.Pointer[routeSet]

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
	if s.listenHook != nil {
		ln = s.listenHook(ln)
	}
	l := &listener{s: s, addr: addr, ln: ln, done: make(chan struct{})}
	l.routes.Store(routes)
	return l, nil
}

// close stops accepting. Connections already accepted are left alone.
func (l *listener) close() {
	l.closeOnce.Do(func() {
		close(l.done)
		l.ln.Close()
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
	for {
		c, err := l.ln.Accept()
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
		tc, ok := c.(*net.TCPConn)
		if !ok {
			s.logger().Error("accepted a non-TCP connection", slog.String("listen", l.addr))
			c.Close()
			continue
		}
		pc := &proxyConn{s: s, client: tc}
		if !s.track(pc) {
			tc.Close()
			continue
		}
		s.wg.Add(1)
		go s.serveConn(pc, l, l.routes.Load())
	}
}
