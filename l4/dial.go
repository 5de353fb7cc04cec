package l4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/internal/rawnet"
)

// target is where a connection is dialed: the leased backend's address,
// or, for a route with a unix: upstream, its socket file (path), whose
// listener must be uid's (see Route.UnixUpstream).
type target struct {
	addr netip.AddrPort
	path string
	uid  uint32
}

// targetOf is where c's connections of route r go with a lease of upstream.
func targetOf(r *Route, upstream netip.AddrPort) target {
	if r.UnixUpstream != "" {
		return target{path: r.UnixUpstream, uid: r.UnixUpstreamUID}
	}
	return target{addr: upstream}
}

func (t target) String() string {
	if t.path != "" {
		return "unix:" + t.path
	}
	return t.addr.String()
}

// dial connects to t with raw system calls, for the event loops:
// the socket never enters Go's netpoller, so there is no epoll
// registration to add and remove, no getsockname/getpeername, and no
// descriptor to duplicate before the hand-over to a loop. The caller owns
// the returned non-blocking descriptor. The attempts go through
// dialGated.
func (s *Server) dial(ctx context.Context, t target) (int, error) {
	fd := -1
	err := s.dialGated(ctx, t, func(ctx context.Context, timeout time.Duration) error {
		var err error
		fd, err = connectRaw(ctx, t, timeout)
		return err
	})
	return fd, err
}

// dialGo connects to t through Go's sockets, for the goroutines' data
// path, with dialGated's gate and retries: a raw connect (connectRaw)
// wrapped once connected.
func (s *Server) dialGo(ctx context.Context, t target) (stream, error) {
	fd, err := s.dial(ctx, t)
	if err != nil {
		return nil, err
	}
	return fileConn(fd)
}

// dialGated runs connect attempts to upstream, each bounded by the timeout
// it is given, until one succeeds (nil error) or the attempts are
// exhausted.
//
// A program that has just started may have a listen backlog of a handful of
// connections; when hundreds of held connections are released at once, the
// kernel drops the SYNs that find the queue full and retransmits them only
// after a second. So the connects to one upstream go through its gate
// (DialConcurrency), each attempt gets a short timeout (DialAttemptTimeout,
// doubling to DialAttemptMax) and is retried with a fresh SYN, within
// DialTimeout overall. A refused connect right after a wake is retried a few
// times too, quickly.
func (s *Server) dialGated(ctx context.Context, upstream target, connect func(ctx context.Context, timeout time.Duration) error) error {
	ctx, cancel := context.WithTimeout(ctx, durationOr(s.DialTimeout, DefaultDialTimeout))
	defer cancel()
	g := s.acquireGate(upstream)
	defer s.releaseGate(upstream, g)
	take := func() error {
		select {
		case g.slots <- struct{}{}:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("dialing upstream %s: waiting for a dial slot: %w", upstream, ctx.Err())
		}
	}
	if err := take(); err != nil {
		return err
	}
	held := true
	defer func() {
		if held {
			<-g.slots
		}
	}()
	attempt := durationOr(s.DialAttemptTimeout, DefaultDialAttemptTimeout)
	maxAttempt := durationOr(s.DialAttemptMax, DefaultDialAttemptMax)
	refusedLeft := s.DialRefusedRetries
	if refusedLeft == 0 {
		refusedLeft = DefaultDialRefusedRetries
	}
	refusedDelay := durationOr(s.DialRefusedDelay, DefaultDialRefusedDelay)
	var timer *time.Timer
	for tries := 1; ; tries++ {
		err := connect(ctx, attempt)
		if err == nil {
			return nil
		}
		if s.dialErrorHook != nil {
			s.dialErrorHook(err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("dialing upstream %s (%d attempts): %w", upstream, tries, err)
		}
		var ne net.Error
		switch {
		case refused(err) && refusedLeft > 0:
			refusedLeft--
			// Nothing is in flight while this dial waits to retry: the
			// slot goes to the others (dials queued behind a refusing
			// upstream would otherwise each wait out all its retries).
			<-g.slots
			held = false
			if timer == nil {
				timer = time.NewTimer(refusedDelay)
			} else {
				timer.Reset(refusedDelay)
			}
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				return fmt.Errorf("dialing upstream %s (%d attempts): %w", upstream, tries, err)
			}
			refusedDelay *= 2
			if terr := take(); terr != nil {
				return terr
			}
			held = true
		case errors.As(err, &ne) && ne.Timeout():
			attempt = min(2*attempt, maxAttempt)
		default:
			return fmt.Errorf("dialing upstream %s (%d attempts): %w", upstream, tries, err)
		}
	}
}

// dialGate bounds the connects in flight to one upstream address.
type dialGate struct {
	slots chan struct{}
	refs  int // dials holding or waiting for the gate, under s.dialMu
}

func (s *Server) acquireGate(upstream target) *dialGate {
	s.dialMu.Lock()
	defer s.dialMu.Unlock()
	g, ok := s.dialGates[upstream]
	if !ok {
		if s.dialGates == nil {
			s.dialGates = make(map[target]*dialGate)
		}
		g = &dialGate{slots: make(chan struct{}, max(s.DialConcurrency, 1))}
		s.dialGates[upstream] = g
	}
	g.refs++
	return g
}

func (s *Server) releaseGate(upstream target, g *dialGate) {
	s.dialMu.Lock()
	defer s.dialMu.Unlock()
	g.refs--
	if g.refs == 0 {
		delete(s.dialGates, upstream)
	}
}

// maxRewakes bounds how often one connection gives its lease back and wakes
// its app again because the upstream refused every connect.
const maxRewakes = 2

// dialUpstream is the dial step on the event loops' path: it returns
// conn, the connection a ConnWaker handed over with the lease, when there
// is one (not -1), else a connection dialed by dialLeased, with the lease
// then in force; false when c has been dropped.
func (s *Server) dialUpstream(c *proxyConn, r Route, upstream netip.AddrPort, conn int, release func()) (int, func(), bool) {
	if conn >= 0 {
		t := targetOf(&r, upstream)
		if t.path != "" {
			// The probe's connection is judged as a dial's is.
			if err := checkPeer(conn, t); err != nil {
				syscall.Close(conn)
				s.refuse(c, r, release, RefusedUpstreamUnreachable, "dialing upstream failed, closing connection",
					slog.String("upstream", t.String()), slog.Any("err", err))
				return -1, nil, false
			}
			return conn, release, true
		}
		// Nagle off, as on a dial.
		syscall.SetsockoptInt(conn, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		return conn, release, true
	}
	fd := -1
	release, ok := s.dialLeased(c, r, upstream, release, func(up netip.AddrPort) (err error) {
		fd, err = s.dial(s.ctx, targetOf(&r, up))
		return err
	})
	return fd, release, ok
}

// dialLeased connects c to the upstream of its lease through connect (dial
// or dialGo). When the upstream refuses every connect (its program exited,
// killed or crashed, and the Waker has yet to see it or restart it), it
// gives the lease back and wakes the app again, up to maxRewakes times: the
// new lease is the restarted program's, so the client is served rather than
// closed. It returns the lease in force once connected; on failure c has
// been dropped (with the route's unavailable reply) and the log says why.
//
// A connect that fails for lack of descriptors is retried, with a pause
// doubling from DialRefusedDelay, until r.StartTimeout after c's wake: the
// client waits as it would for a start, and is served once descriptors
// are free again.
func (s *Server) dialLeased(c *proxyConn, r Route, upstream netip.AddrPort, release func(), connect func(netip.AddrPort) error) (func(), bool) {
	fdWait := durationOr(s.DialRefusedDelay, DefaultDialRefusedDelay)
	for rewakes := 0; ; {
		err := connect(upstream)
		if err == nil {
			return release, true
		}
		if noDescriptors(err) && s.waitForDescriptors(c, r, &fdWait) {
			continue
		}
		// A connection that may not wake the app (wake_from) does not
		// wake it again either.
		if rewakes == maxRewakes || c.passive || s.ctx.Err() != nil || !refused(err) {
			s.refuse(c, r, release, RefusedUpstreamUnreachable, "dialing upstream failed, closing connection",
				slog.String("upstream", targetOf(&r, upstream).String()), slog.Any("err", err))
			return nil, false
		}
		rewakes++
		release()
		if upstream, release, err = s.Waker.Wake(s.ctx, r.App); err != nil {
			s.refuse(c, r, nil, s.wakeRefusal(err), "connection closed unserved", slog.Any("err", err))
			return nil, false
		}
		c.up = upstream
	}
}

// refused reports whether err says nobody listens at the upstream: a port
// that refuses, or a socket file that is gone (ENOENT) or that nobody
// listens on.
func refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

// connectRaw makes one connect attempt (see rawnet.Connect) and sets
// TCP_NODELAY on the socket; to a socket file (rawnet.ConnectUnix), it
// checks who listens there instead (checkPeer).
func connectRaw(ctx context.Context, t target, timeout time.Duration) (int, error) {
	if t.path != "" {
		fd, err := rawnet.ConnectUnix(ctx, t.path, timeout)
		if err != nil {
			return -1, err
		}
		if err := checkPeer(fd, t); err != nil {
			syscall.Close(fd)
			return -1, err
		}
		return fd, nil
	}
	fd, err := rawnet.Connect(ctx, t.addr, timeout)
	if err != nil {
		return -1, err
	}
	// Small exchanges must not wait for Nagle, as with Go's sockets.
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
		syscall.Close(fd)
		return -1, os.NewSyscallError("setsockopt", err)
	}
	return fd, nil
}

// noDescriptors reports whether err says the process (EMFILE) or the
// system (ENFILE) has no descriptor left.
func noDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// maxDescriptorWait caps the pause between two dials waiting for a
// descriptor.
const maxDescriptorWait = 100 * time.Millisecond

// waitForDescriptors pauses c's dial for *wait (then doubled, up to
// maxDescriptorWait), unless that would take it past r.StartTimeout from
// its wake or the server shuts down meanwhile; false: give up.
func (s *Server) waitForDescriptors(c *proxyConn, r Route, wait *time.Duration) bool {
	return s.pause(wait, c.start.Add(durationOr(r.StartTimeout, DefaultDialTimeout)))
}

// pause waits *wait, doubling it up to maxDescriptorWait, unless that
// would take it past deadline or the server shuts down meanwhile; false:
// give up.
func (s *Server) pause(wait *time.Duration, deadline time.Time) bool {
	d := min(*wait, time.Until(deadline))
	if d <= 0 {
		return false
	}
	*wait = min(2**wait, maxDescriptorWait)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// checkPeer refuses a connection to a socket file whose listener is not
// t.uid, the user the app's program runs as (rawnet.CheckPeer).
func checkPeer(fd int, t target) error { return rawnet.CheckPeer(fd, t.path, t.uid) }
