package l4

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// dial connects to upstream. Keep-alive is off (it costs setsockopt calls
// per connection) and the address is a literal (no resolver).
//
// A program that has just started may have a listen backlog of a handful of
// connections; when hundreds of held connections are released at once, the
// kernel drops the SYNs that find the queue full and retransmits them only
// after a second. So each attempt gets a short timeout (DialAttemptTimeout,
// doubling to DialAttemptMax) and is retried with a fresh SYN, within
// DialTimeout overall. A refused connect right after a wake is retried a few
// times too, quickly.
func (s *Server) dial(ctx context.Context, upstream netip.AddrPort) (*net.TCPConn, error) {
	addr := upstream.String()
	var c *net.TCPConn
	err := s.dialGated(ctx, upstream, func(ctx context.Context, timeout time.Duration) error {
		d := net.Dialer{KeepAlive: -1, Timeout: timeout}
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c = nc.(*net.TCPConn)
		}
		return err
	})
	return c, err
}

// dialGated runs connect attempts to upstream, each bounded by the timeout
// it is given, through upstream's gate and with dial's timeouts and
// retries, until one succeeds (nil error) or the attempts are exhausted.
func (s *Server) dialGated(ctx context.Context, upstream netip.AddrPort, connect func(ctx context.Context, timeout time.Duration) error) error {
	ctx, cancel := context.WithTimeout(ctx, durationOr(s.DialTimeout, DefaultDialTimeout))
	defer cancel()
	g := s.acquireGate(upstream)
	defer s.releaseGate(upstream, g)
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("dialing upstream %s: waiting for a dial slot: %w", upstream, ctx.Err())
	}
	defer func() { <-g.slots }()
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
		case errors.Is(err, syscall.ECONNREFUSED) && refusedLeft > 0:
			refusedLeft--
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

func (s *Server) acquireGate(upstream netip.AddrPort) *dialGate {
	s.dialMu.Lock()
	defer s.dialMu.Unlock()
	g, ok := s.dialGates[upstream]
	if !ok {
		if s.dialGates == nil {
			s.dialGates = make(map[netip.AddrPort]*dialGate)
		}
		g = &dialGate{slots: make(chan struct{}, max(s.DialConcurrency, 1))}
		s.dialGates[upstream] = g
	}
	g.refs++
	return g
}

func (s *Server) releaseGate(upstream netip.AddrPort, g *dialGate) {
	s.dialMu.Lock()
	defer s.dialMu.Unlock()
	g.refs--
	if g.refs == 0 {
		delete(s.dialGates, upstream)
	}
}
