package l4

import (
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
