package l4

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// proxyConn is one accepted connection, from accept to its last byte.
type proxyConn struct {
	s *Server
	// client is the client's socket, or nil while the client is the raw
	// descriptor cfd (see acceptRaw).
	client stream
	// cfd is the client's raw descriptor, -1 once it is owned elsewhere
	// (wrapped in client, or handed to the loop). While c is tracked and
	// not spliced it is changed and closed only under s.mu or after
	// untrack, so that Shutdown can shut it down under s.mu.
	cfd int
	// remote is the client's address as accept returned it, for raw
	// clients.
	remote netip.AddrPort
	// unix: the client came through a unix: listen address; it has no
	// IP address.
	unix bool
	// upstream is the upstream's Go socket, set under s.mu when the
	// goroutines copy c (markSpliced); nil while c is held (routing,
	// waking, dialing) and when an event loop carries it.
	upstream stream
	// spliced is set, under s.mu, once the connection is spliced (to the
	// event loop or to goroutines).
	spliced bool
	// lc is set, under s.mu, when the event loop moves c's bytes.
	lc      *loopConn
	app     string
	release func()
	start   time.Time
	// passive: the lease does not keep the app up (a source outside the
	// route's WakeFrom).
	passive bool

	// Watching for quiet (quiet.go). counted, traffic, up and idleClose
	// are set before c is spliced; moved is added to by the direction
	// that moves bytes while counted; swept and quietSince are the
	// sweeper's, under s.mu.
	counted     bool
	traffic     bool           // tell the TrafficWaker when bytes moved
	up          netip.AddrPort // the leased backend, for Traffic
	idleClose   time.Duration
	moved       atomic.Int64
	swept       int64
	quietSince  time.Time
	quietClosed atomic.Bool // the sweeper closed it: its copy errors are no reset

	// accessLog: the route keeps an access log (Route.AccessLog).
	accessLog bool

	// pending counts the directions still copying: the one that brings it
	// to zero closes both sockets and releases the lease.
	pending atomic.Int32
	aborted atomic.Bool
	// Bytes copied per direction, each written only by its own direction
	// and read after pending reached zero.
	sent, received int64
}

// track registers c for Shutdown; false if the server is shutting down.
func (s *Server) track(c *proxyConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *proxyConn) {
	s.mu.Lock()
	delete(s.conns, c)
	delete(s.watched, c)
	s.mu.Unlock()
}

// goClient gives c a Go socket for its client if it has a raw descriptor,
// for the paths that read, write or wait on the client through Go (peeking,
// unavailable replies, the goroutines' copy). Wrapping takes a descriptor
// more for a moment: without one (EMFILE, ENFILE) the client is held and
// the wrap tried again, pausing as a dial does, for up to PeekTimeout. False
// if that failed; the descriptor is closed then.
func (s *Server) goClient(c *proxyConn) bool {
	if c.client != nil {
		return true
	}
	wait := durationOr(s.DialRefusedDelay, DefaultDialRefusedDelay)
	deadline := time.Now().Add(durationOr(s.PeekTimeout, DefaultPeekTimeout))
	for {
		err := s.wrapClient(c)
		if err == nil {
			return true
		}
		if noDescriptors(err) && s.noFdHook != nil {
			s.noFdHook()
		}
		if !noDescriptors(err) || !s.pause(&wait, deadline) {
			s.logger().Warn("wrapping the client socket failed, closing connection", slog.Any("err", err))
			s.mu.Lock()
			syscall.Close(c.cfd)
			c.cfd = -1
			s.mu.Unlock()
			return false
		}
	}
}

// wrapClient wraps c's raw descriptor, which it closes once wrapped; on
// failure c keeps it.
func (s *Server) wrapClient(c *proxyConn) error {
	// Under s.mu: Shutdown shuts down held clients' descriptors.
	s.mu.Lock()
	defer s.mu.Unlock()
	dup, err := unix.FcntlInt(uintptr(c.cfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("wrapping a socket: %w", os.NewSyscallError("fcntl", err))
	}
	tc, err := fileConn(dup)
	if err != nil {
		return err
	}
	syscall.Close(c.cfd)
	c.cfd = -1
	c.client = tc
	return nil
}

// stream is a connected stream socket on Go's netpoller: a *net.TCPConn,
// or a *net.UnixConn for a unix: listen address or upstream.
type stream interface {
	net.Conn
	CloseRead() error
	CloseWrite() error
	syscall.Conn
}

// fileConn wraps fd, which it takes over, in a stream.
func fileConn(fd int) (stream, error) {
	f := os.NewFile(uintptr(fd), "upstream")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("wrapping a socket: %w", err)
	}
	st, ok := nc.(stream)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("wrapping a socket: not a stream socket")
	}
	return st, nil
}

// clientAddr is the client's address for logs: "unix" for a client of a
// unix: listen address, whose peer has no address of its own.
func (c *proxyConn) clientAddr() string {
	if c.unix {
		return "unix"
	}
	if c.client != nil {
		return c.client.RemoteAddr().String()
	}
	return c.remote.String()
}

// drop ends a connection that never got spliced.
func (s *Server) drop(c *proxyConn, release func()) {
	if c.client != nil {
		c.client.Close()
	}
	if release != nil {
		release()
	}
	s.untrack(c)
	if c.cfd >= 0 {
		syscall.Close(c.cfd) // untracked: Shutdown no longer sees it
		c.cfd = -1
	}
}

// closeBoth closes the connection's sockets; Shutdown uses it to cut
// connections still open when its context ends.
func (c *proxyConn) closeBoth() {
	if c.lc != nil {
		// The loop owns the descriptors until it hands c back.
		c.lc.loop.cut(c.lc)
		return
	}
	if c.client == nil {
		syscall.Shutdown(c.cfd, syscall.SHUT_RDWR)
		return
	}
	c.client.Close()
	if c.upstream != nil {
		c.upstream.Close()
	}
}

// finish runs once, after both directions ended.
func (c *proxyConn) finish() {
	if c.client != nil {
		c.client.Close()
	}
	if c.upstream != nil {
		c.upstream.Close()
	}
	c.release()
	c.s.untrack(c)
	if o := c.s.Observer; o != nil {
		o.ConnectionClosed(c.app, c.sent, c.received)
	}
	if c.accessLog {
		end := "closed"
		if c.aborted.Load() {
			end = "reset"
		}
		c.s.accessLine(c, end)
	} else if log := c.s.logger(); log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("connection closed", slog.String("app", c.app),
			slog.String("client", c.clientAddr()),
			slog.Int64("sent", c.sent), slog.Int64("received", c.received),
			slog.Bool("reset", c.aborted.Load()),
			slog.Duration("duration", time.Since(c.start)))
	}
}
