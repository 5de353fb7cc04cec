package l4

import (
	"io"
	"time"
)

// Bounds on sending an unavailable reply: a client that does not read
// cannot hold the connection's goroutine longer than unavailableWriteTimeout,
// and one that keeps sending cannot hold it past unavailableLinger.
const (
	unavailableWriteTimeout = 2 * time.Second
	unavailableLinger       = time.Second
	unavailableDrainMax     = 64 << 10
)

// dropUnavailable ends a held connection whose app cannot serve it. With a
// reply, the reply is written first; then, like net/http's lingering close,
// the write side is shut and what the client sent is read and discarded for
// a moment: closing a socket with unread input sends a reset, which may
// reach the client before it has read the reply and make it lose it. The
// lease (release) is given back before any of that.
func (s *Server) dropUnavailable(c *proxyConn, release func(), reply []byte) {
	if len(reply) == 0 || s.ctx.Err() != nil {
		s.drop(c, release)
		return
	}
	if release != nil {
		release()
	}
	if !s.goClient(c) {
		s.drop(c, nil)
		return
	}
	_ = c.client.SetWriteDeadline(time.Now().Add(unavailableWriteTimeout))
	if _, err := c.client.Write(reply); err == nil {
		_ = c.client.CloseWrite()
		_ = c.client.SetReadDeadline(time.Now().Add(unavailableLinger))
		_, _ = io.CopyN(io.Discard, c.client, unavailableDrainMax)
	}
	s.drop(c, nil)
}
