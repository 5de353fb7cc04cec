package l4

import (
	"context"
	"log/slog"
	"net/netip"
	"time"
)

// wake leases a backend of r's app from the Waker, which waits while the
// app starts, with the connection to the upstream a ConnWaker hands over
// (conn, -1 when none). c's duration counts from here. On failure c is
// dropped, with r's unavailable reply, and ok is false.
func (s *Server) wake(c *proxyConn, r Route) (upstream netip.AddrPort, conn int, release func(), ok bool) {
	c.app, c.start, c.accessLog = r.App, time.Now(), r.AccessLog
	var err error
	if cw, isConnWaker := s.Waker.(ConnWaker); isConnWaker {
		upstream, conn, release, err = cw.WakeConn(s.ctx, r.App)
	} else {
		conn = -1
		upstream, release, err = s.Waker.Wake(s.ctx, r.App)
	}
	if err != nil {
		s.refuse(c, r, nil, s.wakeRefusal(err), "connection closed unserved", slog.Any("err", err))
		return upstream, -1, nil, false
	}
	return upstream, conn, release, true
}

// EarlyWaker is a Waker that also tells, while the app starts, where its
// program is to serve as soon as it is spawned. lifecycle.Manager
// satisfies it. A UDP flow woken through it connects its socket there
// while the program starts, rather than after.
type EarlyWaker interface {
	// WakeEarly is Wake, calling early once, on the caller's goroutine
	// and before it returns, with the upstream of the starting instance;
	// not at all when there is none to wait for. The upstream it returns
	// may differ from early's.
	WakeEarly(ctx context.Context, app string, early func(upstream netip.AddrPort)) (upstream netip.AddrPort, release func(), err error)
}
