package l4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Handed-off addresses (Route.Handoff "socket"): the program accepts from
// the listening socket itself. The Server never accepts there; while no
// program runs, one goroutine per address waits for the socket to turn
// readable (a connection in its backlog) and asks HandoffWaker to start
// the app, then lets go of the socket (no accept, no epoll registration)
// until the program is gone. Connections that arrive meanwhile wait in
// the kernel's backlog.

// Handoff values of Route.Handoff.
const (
	HandoffSocket = "socket"
	// HandoffInetd: the Server accepts, and each connection goes to a
	// program of its own (InetdWaker), Route.MaxPrograms at once; the
	// others wait in the backlog, the socket unwatched (inetd.go).
	HandoffInetd = "inetd"
)

// HandoffWaker starts the program of a handed-off app. lifecycle.Manager
// satisfies it. A Server with handed-off routes needs a Waker that
// implements it.
type HandoffWaker interface {
	// Handoff starts app, if it is not running, with the listening
	// sockets of its addresses (see ListenFiles), waiting while it starts
	// or stops, and returns a channel closed once the program is gone.
	Handoff(ctx context.Context, app string) (gone <-chan struct{}, err error)
}

// handoffGroup is the state shared by the listeners of one handed-off
// app: a connection on any of its addresses starts the program, and none
// is watched until the program is gone.
type handoffGroup struct {
	app string

	mu sync.Mutex
	// watching holds, per listener waiting for a connection, the
	// descriptor it waits on; interrupt closes it to end the wait.
	watching map[*listener]*watch
	// running: a program holds the sockets; resume is closed once it is
	// gone.
	running bool
	resume  chan struct{}
	// lsts are the group's listeners. Under the Server's mu.
	lsts map[*listener]struct{}

	// inetd: the programs running, the most at once, and a channel
	// closed (and replaced) whenever one ends.
	progs, max int
	freed      chan struct{}
}

// handoffGroupLocked returns app's group, made on first use. s.mu must be
// held.
func (s *Server) handoffGroupLocked(app string) *handoffGroup {
	if s.groups == nil {
		s.groups = make(map[string]*handoffGroup)
	}
	g := s.groups[app]
	if g == nil {
		g = &handoffGroup{app: app, watching: make(map[*listener]*watch), lsts: make(map[*listener]struct{})}
		s.groups[app] = g
	}
	return g
}

// handoff says how the address's connections are taken: "" when the
// Server accepts them, else the hand-off and its app's name. A handed-off
// address has one route (appfile sees to it).
func (rs *routeSet) handoff() string { return handoffOf(rs.routes) }

// handoffOf is routeSet.handoff for the routes of a table.
func handoffOf(routes []Route) string {
	if len(routes) != 1 || routes[0].Handoff == "" {
		return ""
	}
	return routes[0].Handoff + " " + routes[0].App
}

// startHandoffLocked starts l's watcher. s.mu must be held; s.wg counts
// the watcher already.
func (l *listener) startHandoffLocked() {
	s := l.s
	g := s.handoffGroupLocked(l.routes.Load().routes[0].App)
	g.lsts[l] = struct{}{}
	l.group = g
	if l.routes.Load().routes[0].Handoff == HandoffInetd {
		g.setMax(l.routes.Load().routes[0].MaxPrograms)
		go l.serveInetd(g)
		return
	}
	go l.watchSocket(g)
}

// closeHandoffLocked ends l's watch: its watcher closes the descriptor on
// its way out. s.mu must be held.
func (l *listener) closeHandoffLocked() {
	g := l.group
	delete(g.lsts, l)
	if len(g.lsts) == 0 && l.s.groups[g.app] == g {
		delete(l.s.groups, g.app)
	}
	g.mu.Lock()
	if w := g.watching[l]; w != nil {
		w.interrupt()
	}
	g.mu.Unlock()
	// Free the port now, for a new bind, as a closed listener does: the
	// watcher closes the descriptor, and a program may hold another.
	syscall.Shutdown(l.fd, syscall.SHUT_RD)
}

// watchSocket waits, while no program holds the sockets, for a connection
// in l's backlog, and then has the program started.
func (l *listener) watchSocket(g *handoffGroup) {
	s := l.s
	defer l.watcherDone()
	hw, _ := s.Waker.(HandoffWaker)
	for {
		g.mu.Lock()
		running, resume := g.running, g.resume
		g.mu.Unlock()
		if running {
			select {
			case <-resume:
				continue
			case <-l.done:
				return
			}
		}
		readable, err := l.waitReadable(g)
		if err != nil {
			s.logger().Error("watching a handed-off socket", slog.String("listen", l.addr), slog.String("app", g.app), slog.Any("err", err))
			return
		}
		select {
		case <-l.done:
			return
		default:
		}
		if readable {
			s.startHandoff(g, hw)
		}
	}
}

// watcherDone closes l's descriptor as its watcher ends: the watcher owns
// it, as the event loops own theirs.
func (l *listener) watcherDone() {
	s := l.s
	s.mu.Lock()
	syscall.Close(l.fd)
	l.fd = -1
	s.mu.Unlock()
	s.wg.Done()
}

// waitReadable waits on a duplicate of l's socket, registered with Go's
// netpoller only for the wait, until a connection is queued (true), or
// the wait is ended by closing the duplicate: another listener of the
// group started the program, or l is closed (false).
func (l *listener) waitReadable(g *handoffGroup) (bool, error) {
	nfd, err := unix.FcntlInt(uintptr(l.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return false, os.NewSyscallError("fcntl", err)
	}
	// The program may have made the shared socket blocking: the wait
	// needs it not to be (and the next program gets it as the first did).
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return false, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(nfd), l.addr)
	defer f.Close()
	g.mu.Lock()
	select {
	case <-l.done:
		g.mu.Unlock()
		return false, nil
	default:
	}
	if g.pausedLocked() {
		g.mu.Unlock()
		return false, nil
	}
	w := &watch{f: f}
	g.watching[l] = w
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.watching, l)
		g.mu.Unlock()
	}()
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	readable := false
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, _ := unix.Poll(fds, 0)
		readable = n > 0
		return readable
	})
	if err != nil {
		g.mu.Lock()
		interrupted := w.interrupted
		g.mu.Unlock()
		if interrupted {
			return false, nil
		}
	}
	return readable, err
}

// watch is one listener's wait for a connection. Guarded by its group's mu.
type watch struct {
	f           *os.File
	interrupted bool
}

// interrupt ends the wait: the descriptor waited on is closed.
func (w *watch) interrupt() {
	w.interrupted = true
	w.f.Close()
}

// interruptAllLocked ends every wait of g. g.mu must be held.
func (g *handoffGroup) interruptAllLocked() {
	for _, w := range g.watching {
		w.interrupt()
	}
}

// pausedLocked reports whether g's sockets are not to be watched: a
// program holds them (socket), or every program slot is taken (inetd).
// g.mu must be held.
func (g *handoffGroup) pausedLocked() bool {
	return g.running || (g.max > 0 && g.progs >= g.max)
}

// startHandoff has g's program started, unless it runs already, and stops
// the group's watches until it is gone.
func (s *Server) startHandoff(g *handoffGroup, hw HandoffWaker) {
	g.mu.Lock()
	if g.running {
		g.mu.Unlock()
		return
	}
	g.running = true
	resume := make(chan struct{})
	g.resume = resume
	g.interruptAllLocked()
	g.mu.Unlock()
	s.wg.Add(1) // the caller, a watcher, is counted: no Wait can have returned
	go s.runHandoff(g, hw, resume)
}

// runHandoff starts g's program and waits for it to be gone. A start that
// fails (a failed app in its backoff, a program that did not get ready)
// closes the connections waiting for it, as a proxied app's held
// connections are, rather than watching them again at once.
func (s *Server) runHandoff(g *handoffGroup, hw HandoffWaker, resume chan struct{}) {
	defer s.wg.Done()
	var (
		gone <-chan struct{}
		err  = errors.New("the server's Waker cannot hand sockets off")
	)
	if hw != nil {
		gone, err = hw.Handoff(s.ctx, g.app)
	}
	if err == nil {
		select {
		case <-gone:
		case <-s.ctx.Done():
		}
	} else if s.ctx.Err() == nil {
		s.logger().Warn("handing sockets off failed: closing the connections waiting", slog.String("app", g.app), slog.Any("err", err))
		s.refuseWaiting(g)
	}
	if s.ctx.Err() != nil {
		// Shutting down: the listeners are being closed, and a watch
		// resumed now would only start the program again.
		return
	}
	g.mu.Lock()
	g.running = false
	close(resume)
	g.mu.Unlock()
}

// refuseWaiting accepts and closes the connections queued on g's sockets.
func (s *Server) refuseWaiting(g *handoffGroup) {
	s.mu.Lock()
	var fds []int
	for l := range g.lsts {
		if l.fd >= 0 {
			if fd, err := unix.FcntlInt(uintptr(l.fd), unix.F_DUPFD_CLOEXEC, 0); err == nil {
				fds = append(fds, fd)
			}
		}
	}
	s.mu.Unlock()
	for _, fd := range fds {
		for {
			// Polled first: the socket may be blocking, as a program left it.
			if n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0); n <= 0 {
				break
			}
			nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
			if err == unix.EINTR || err == unix.ECONNABORTED {
				continue
			}
			if err != nil {
				break
			}
			unix.Close(nfd)
		}
		unix.Close(fd)
	}
}

// ListenFiles returns duplicates of the listening sockets of addrs, in
// their order, for a handed-off program; the caller closes them. Every
// address must be listening. It satisfies lifecycle.Sockets.
func (s *Server) ListenFiles(addrs []string) ([]*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	files := make([]*os.File, 0, len(addrs))
	fail := func(err error) ([]*os.File, error) {
		for _, f := range files {
			f.Close()
		}
		return nil, err
	}
	for _, addr := range addrs {
		l := s.listeners[addr]
		if l == nil || l.fd < 0 {
			return fail(fmt.Errorf("%s is not listening", addr))
		}
		fd, err := unix.FcntlInt(uintptr(l.fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", addr, os.NewSyscallError("fcntl", err)))
		}
		files = append(files, os.NewFile(uintptr(fd), addr))
	}
	return files, nil
}
