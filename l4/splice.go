package l4

import (
	"fmt"
	"syscall"
)

// splice gives c, connected to its upstream by fd, to an event loop, which
// sends pre to the upstream before any of the client's bytes, moves the
// bytes until both directions end, then closes both sockets and calls
// release. self, when not nil, is the loop calling (it accepted c): it
// keeps c, registered at once, unless it carries more than its share (see
// eventLoopLocked). splice reports false when there is no loop to take c:
// fd, pre and release are then the caller's, for the goroutines (pipeRaw).
// A server shutting down drops c.
func (s *Server) splice(c *proxyConn, fd int, pre []byte, release func(), self *eventLoop) bool {
	loop, ok := s.attachLoop(c, fd, pre, self)
	switch {
	case !ok:
		s.drop(c, release)
	case loop == nil:
		return false
	default:
		c.release = release
		s.wg.Add(1) // done by the loop once c has ended
		if loop == self {
			loop.register(c.lc) // its own thread: no queue, no wake-up
		} else {
			loop.add(c.lc)
		}
	}
	return true
}

// attachLoop picks the event loop for c and its upstream's descriptor
// upfd: it marks c as spliced and returns the loop with c.lc set, pre
// pending on the client-to-upstream direction, taking ownership of upfd. It
// returns a nil loop, leaving upfd to the caller, when there is no loop;
// false, with upfd closed, if the server is shutting down. self, when not
// nil, is the loop calling; otherwise the loops take turns.
func (s *Server) attachLoop(c *proxyConn, upfd int, pre []byte, self *eventLoop) (*eventLoop, bool) {
	// A raw client is handed over as it is; a Go one is duplicated (see
	// dupFd).
	cfd := c.cfd
	var dupErr error
	if c.client != nil {
		cfd, dupErr = dupFd(c.client)
	}
	s.mu.Lock()
	closed := s.closed
	var l *eventLoop
	if !closed && dupErr == nil {
		if l = s.eventLoopLocked(self); l != nil {
			c.spliced = true
			c.lc = &loopConn{pc: c, fd: [2]int{cfd, upfd}, loop: l}
			s.watchLocked(c)
			if pre != nil {
				// Pending as after a partial write: flushed first.
				c.lc.dir[0].pend, c.lc.dir[0].pendBuf = pre, pre
			}
			c.cfd = -1
		}
	}
	s.mu.Unlock()
	if l != nil {
		if c.client != nil {
			c.client.Close()
		}
		return l, true
	}
	if c.client != nil && cfd >= 0 {
		syscall.Close(cfd)
	}
	if closed {
		syscall.Close(upfd)
		return nil, false
	}
	return nil, true
}

// dupFd returns a duplicate of c's descriptor (non-blocking, like c's),
// owned by the caller. Closing c afterwards takes the socket out of Go's
// netpoller, which would otherwise wake a thread for every event on a socket
// no goroutine reads; the duplicate keeps the socket open.
func dupFd(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var e syscall.Errno
	cerr := rc.Control(func(f uintptr) {
		r, _, errno := syscall.RawSyscall(syscall.SYS_FCNTL, f, syscall.F_DUPFD_CLOEXEC, 0)
		fd, e = int(r), errno
	})
	if cerr != nil {
		return -1, cerr
	}
	if e != 0 {
		return -1, fmt.Errorf("duplicating a socket: %w", e)
	}
	return fd, nil
}
