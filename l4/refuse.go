package l4

import (
	"context"
	"log/slog"
	"time"
)

// RefusedUpstreamUnreachable is the reason of a connection whose app was
// woken but whose upstream could not be dialed.
const RefusedUpstreamUnreachable = "upstream_unreachable"

// refuse closes a client connection that r's app could not serve: logged
// with why, counted by reason (Observer.ConnectionRefused), in the access
// log when the route keeps one, and answered with the route's
// unavailable reply. release, when not nil, is the lease to give back.
func (s *Server) refuse(c *proxyConn, r Route, release func(), reason, msg string, attrs ...slog.Attr) {
	s.logDrop(r.App, msg, append([]slog.Attr{slog.String("reason", reason)}, attrs...)...)
	if o := s.Observer; o != nil {
		o.ConnectionRefused(r.App, reason)
	}
	if r.AccessLog {
		s.accessLine(c, "refused: "+reason)
	}
	s.dropUnavailable(c, release, r.UnavailableReply)
}

// wakeRefusal is the reason a Waker's error refuses a connection for.
func (s *Server) wakeRefusal(err error) string {
	if s.RefusalReason != nil {
		return s.RefusalReason(err)
	}
	return "other"
}

// accessLine writes c's line of the access log, as HAProxy's tcplog: the
// app, the client, bytes each way (in: from the client), how long the
// connection lasted and how it ended.
func (s *Server) accessLine(c *proxyConn, end string) {
	s.logger().LogAttrs(context.Background(), slog.LevelInfo, "connection",
		slog.String("app", c.app), slog.String("client", c.clientAddr()),
		slog.Int64("bytes_in", c.sent), slog.Int64("bytes_out", c.received),
		slog.Duration("duration", time.Since(c.start).Round(time.Microsecond)), slog.String("end", end))
}
