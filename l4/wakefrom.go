package l4

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
)

// PassiveWaker is a ReadyWaker that can also lease a ready backend for a
// connection that must count neither for waking its app nor for keeping
// it up: one from a source outside the route's WakeFrom. lifecycle.Manager
// satisfies it. Without it, such connections are turned away whatever the
// app's state.
type PassiveWaker interface {
	// TryWakePassive is TryWake whose lease leaves the app's idleness
	// alone: the app may stop (or freeze) while it is open.
	TryWakePassive(app string) (upstream netip.AddrPort, release func(), ok bool)
}

// mayWake reports whether c may wake r's app: r has no WakeFrom, or c's
// source is in it. IPv4-mapped sources (a dual-stack listener) count as
// their IPv4 address.
func (c *proxyConn) mayWake(r *Route) bool {
	if len(r.WakeFrom) == 0 {
		return true
	}
	addr := c.remoteAddr().Unmap()
	for _, p := range r.WakeFrom {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// remoteAddr is the client's address.
func (c *proxyConn) remoteAddr() netip.Addr {
	if c.client != nil {
		if a, ok := c.client.RemoteAddr().(*net.TCPAddr); ok {
			return a.AddrPort().Addr()
		}
		return netip.Addr{}
	}
	return c.remote.Addr()
}

// tryPassive leases a ready backend of app for a connection that may not
// wake it; false when the app is not ready or the Waker cannot lease that
// way.
func (s *Server) tryPassive(app string) (netip.AddrPort, func(), bool) {
	pw, ok := s.Waker.(PassiveWaker)
	if !ok {
		return netip.AddrPort{}, nil, false
	}
	return pw.TryWakePassive(app)
}

// turnAway ends c, which came from a source that may not wake r's app while
// the app is not running: r's unavailable reply (or a bare close), counted
// by the Observer.
func (s *Server) turnAway(c *proxyConn, r Route) {
	if log := s.logger(); log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("connection may not wake app, closing it", slog.String("app", r.App),
			slog.String("client", c.clientAddr()))
	}
	if o := s.Observer; o != nil {
		o.ConnectionTurnedAway(r.App)
	}
	s.dropUnavailable(c, nil, r.UnavailableReply)
}
