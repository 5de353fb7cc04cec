package l4

import (
	"context"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// InetdWaker runs a program per connection for a handoff: inetd app.
// lifecycle.Manager satisfies it.
type InetdWaker interface {
	// Inetd runs app's program with conn (a blocking socket, which the
	// caller closes once Inetd returns) as its stdin, stdout and fd 3,
	// and returns a channel closed once the program is gone.
	Inetd(ctx context.Context, app string, conn *os.File) (gone <-chan struct{}, err error)
}

// setMax sets the most programs g runs at once (at least 1).
func (g *handoffGroup) setMax(n int) {
	g.mu.Lock()
	g.max = max(n, 1)
	g.wakeLocked() // a higher bound frees slots
	g.mu.Unlock()
}

// waitFree waits while every program slot is taken; false once done is
// closed.
func (g *handoffGroup) waitFree(done <-chan struct{}) bool {
	for {
		g.mu.Lock()
		if g.progs < g.max {
			g.mu.Unlock()
			return true
		}
		if g.freed == nil {
			g.freed = make(chan struct{})
		}
		freed := g.freed
		g.mu.Unlock()
		select {
		case <-freed:
		case <-done:
			return false
		}
	}
}

// tryAcquire takes a program slot if one is free. Taking the last one
// ends the group's watches: at the bound, no socket is watched.
func (g *handoffGroup) tryAcquire() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.progs >= g.max {
		return false
	}
	g.progs++
	if g.progs >= g.max {
		g.interruptAllLocked()
	}
	return true
}

// release gives a slot back.
func (g *handoffGroup) release() {
	g.mu.Lock()
	g.progs--
	g.wakeLocked()
	g.mu.Unlock()
}

// wakeLocked wakes those waiting for a slot. g.mu must be held.
func (g *handoffGroup) wakeLocked() {
	if g.freed != nil {
		close(g.freed)
		g.freed = nil
	}
}

// serveInetd accepts l's connections one by one while a program slot is
// free, and has a program run for each. With every slot taken the socket
// is not watched: connections wait in the backlog.
func (l *listener) serveInetd(g *handoffGroup) {
	s := l.s
	defer l.watcherDone()
	iw, _ := s.Waker.(InetdWaker)
	var timer *time.Timer
	for g.waitFree(l.done) {
		readable, err := l.waitReadable(g)
		if err != nil {
			s.logger().Error("watching an inetd socket", slog.String("listen", l.addr), slog.String("app", g.app), slog.Any("err", err))
			return
		}
		select {
		case <-l.done:
			return
		default:
		}
		if !readable || !g.tryAcquire() {
			continue
		}
		// Blocking, as inetd programs expect their stdin and stdout.
		nfd, _, err := unix.Accept4(l.fd, unix.SOCK_CLOEXEC)
		switch err {
		case nil:
		case unix.EAGAIN, unix.EINTR, unix.ECONNABORTED:
			g.release()
			continue
		default:
			g.release()
			if !l.waitBackoff(&timer, err) {
				return
			}
			continue
		}
		l.accepted()
		s.wg.Add(1) // l's watcher is counted: no Wait can have returned
		go s.runInetd(g, iw, os.NewFile(uintptr(nfd), "connection"))
	}
}

// runInetd runs one program for conn and holds its slot until it is gone.
func (s *Server) runInetd(g *handoffGroup, iw InetdWaker, conn *os.File) {
	defer s.wg.Done()
	defer g.release()
	if iw == nil {
		conn.Close()
		s.logger().Error("the server's Waker cannot run inetd programs", slog.String("app", g.app))
		return
	}
	gone, err := iw.Inetd(s.ctx, g.app, conn)
	conn.Close()
	if err != nil {
		if s.ctx.Err() == nil {
			s.logger().Warn("running an inetd program failed: connection closed", slog.String("app", g.app), slog.Any("err", err))
		}
		return
	}
	select {
	case <-gone:
	case <-s.ctx.Done():
	}
}
