package l4

import (
	"context"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/internal/unixaddr"
)

// listener is one listen address: its socket, its accept loop and the routes
// its connections are matched against.
type listener struct {
	s    *Server
	addr string // the table key
	ln   net.Listener
	// fd is a duplicate of the listening socket, outside Go's netpoller,
	// when the event loop carries connections (-1 otherwise); ln is
	// closed then. The event loops accept on it (eventLoop.acceptFrom),
	// or, if there is no loop, file wraps it for the accept loop's raw
	// accept4. Only the loops, or the accept loop through file, close it.
	fd     int
	file   *os.File
	routes atomic.Pointer[routeSet]
	// handoff is the routes' hand-off when bound (routeSet.handoff): a handed-off
	// socket is never accepted from, nor in the event loops; group is
	// its app's (handoff.go).
	handoff string
	group   *handoffGroup
	// accepting: connections are accepted (by the event loop or the accept
	// loop). A listener only bound (Bind) lets the kernel queue
	// connections until Apply starts it. Under s.mu.
	accepting bool
	// inLoop: the event loops accept for this listener. Under s.mu.
	inLoop bool
	// loops are the event loops that accept for it (every loop of the
	// Server, set by startLocked); lid is its epoll data in each of them.
	loops []*eventLoop
	lid   int32
	// gone has bit i set once loops[i] has let go of the listener; the
	// last to let go closes fd.
	gone atomic.Uint32

	// Accept backoff, shared by whoever accepts (the accept loop or the
	// event loops); failing says there is a delay to reset.
	bmu        sync.Mutex
	failing    atomic.Bool
	delay      time.Duration
	lastLog    time.Time
	suppressed int

	// Rate limit of the "no app for this name" log.
	noMatchLast       atomic.Int64 // UnixNano of the last such log
	noMatchSuppressed atomic.Int64

	// sockPath, sockID and sock are a unix: listener's socket file, its
	// identity and how it was made ("" for a TCP listener).
	sockPath string
	sockID   fileID
	sock     SocketFile

	closeOnce sync.Once
	done      chan struct{} // closed when the listener is closed
}

// listen binds addr. Keep-alive is off: it costs setsockopt calls on every
// accepted connection, and a held connection's liveness is the client's
// business.
//
// A unix: address binds its socket file instead (listenUnix).
func (s *Server) listen(addr string, routes *routeSet) (*listener, error) {
	var (
		ln   net.Listener
		err  error
		path = unixaddr.Path(addr)
		sock SocketFile
		id   fileID
	)
	if path != "" {
		sock = socketOf(routes.routes)
		ln, id, err = s.listenUnix(path, sock)
	} else {
		lc := net.ListenConfig{KeepAlive: -1}
		ln, err = lc.Listen(context.Background(), "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	l := &listener{s: s, addr: addr, ln: ln, fd: -1, done: make(chan struct{}), handoff: routes.handoff(),
		sockPath: path, sockID: id, sock: sock}
	if sc, ok := ln.(syscall.Conn); ok && (s.DataPath != DataPathGoroutines || l.handoff != "") {
		// Closing ln takes the original descriptor out of Go's netpoller,
		// which would otherwise be woken for every connection; the
		// duplicate keeps the socket listening.
		if fd, err := dupFd(sc); err == nil {
			l.fd = fd
			ln.Close()
		}
	}
	l.routes.Store(routes)
	return l, nil
}

// startLocked begins accepting: on the event loops when there are some and
// l has a raw descriptor, else in an accept loop of its own. s.mu must be
// held.
func (l *listener) startLocked() {
	s := l.s
	l.accepting = true
	s.wg.Add(1) // done when l stops accepting for good
	if l.handoff != "" && l.fd >= 0 {
		l.startHandoffLocked()
		return
	}
	if l.fd >= 0 {
		if loops := s.eventLoopsLocked(); len(loops) > 0 {
			l.inLoop = true
			l.loops = loops
			l.lid = s.nextLID
			s.nextLID++
			for _, loop := range loops {
				loop.addListener(l)
			}
			return
		}
		// No loop: accept with raw accept4 through Go's netpoller.
		l.file = os.NewFile(uintptr(l.fd), l.addr)
		l.fd = -1
	}
	go l.acceptLoop()
}

// closeLocked stops accepting and frees the address at once, for a new
// bind. Connections already accepted are left alone. s.mu must be held.
func (l *listener) closeLocked() {
	l.closeOnce.Do(func() {
		close(l.done)
		l.ln.Close()
		switch {
		case l.group != nil:
			l.closeHandoffLocked()
		case l.inLoop:
			// The loops own the descriptor and the last to let go
			// closes it; shutting the socket down stops it listening now
			// (the port is free for a new listener) without a close
			// racing a loop's accept.
			syscall.Shutdown(l.fd, syscall.SHUT_RD)
			for _, loop := range l.loops {
				loop.removeListener(l)
			}
		case l.fd >= 0:
			syscall.Close(l.fd) // bound, never started
		case l.file != nil:
			l.file.Close()
		}
		l.removeSocketFile()
	})
}
