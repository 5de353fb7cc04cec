package l4

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
)

// serveRaw dials upstream with raw system calls and hands c to the event
// loop: the plain path (no PROXY header, no peeked bytes) when the loop
// carries spliced connections. The upstream socket never enters Go's
// netpoller. If the loop cannot be had, the socket is wrapped in a
// *net.TCPConn and the goroutines copy, as on the other path.
func (s *Server) serveRaw(c *proxyConn, r Route, upstream netip.AddrPort, release func()) {
	fd, err := s.dialRaw(s.ctx, upstream)
	if err != nil {
		level := slog.LevelWarn
		if s.ctx.Err() != nil {
			level = slog.LevelInfo
		}
		s.logger().Log(context.Background(), level, "dialing upstream failed, closing connection",
			slog.String("app", r.App), slog.String("upstream", upstream.String()), slog.Any("error", err))
		s.dropUnavailable(c, release, r.UnavailableReply)
		return
	}
	loop, ok := s.splicingRaw(c, fd)
	if !ok {
		s.drop(c, release)
		return
	}
	c.release = release
	if loop != nil {
		s.wg.Add(1) // done by the loop once c has ended
		loop.add(c.lc)
		return
	}
	// No loop: fall back to goroutines on a Go socket.
	up, err := fileConn(fd)
	if err != nil {
		s.logger().Warn("wrapping the upstream socket failed, closing connection",
			slog.String("app", r.App), slog.Any("error", err))
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
// closed, if the server is shutting down.
func (s *Server) splicingRaw(c *proxyConn, upfd int) (*eventLoop, bool) {
	cfd, dupErr := dupFd(c.client)
	s.mu.Lock()
	closed := s.closed
	var l *eventLoop
	if !closed && dupErr == nil {
		if l = s.eventLoopLocked(); l != nil {
			c.spliced = true
			c.lc = &loopConn{pc: c, fd: [2]int{cfd, upfd}}
		}
	}
	s.mu.Unlock()
	if l != nil {
		c.client.Close()
		return l, true
	}
	if cfd >= 0 {
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
