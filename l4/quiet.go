package l4

import (
	"context"
	"log/slog"
	"net/netip"
	"time"
)

// Quiet connections. A connection whose route has a ClientIdleTimeout or
// a TrafficIdle is watched: its bytes are counted as they move
// (proxyConn.moved, one atomic add per read; nothing for the others), and
// one sweeper goroutine per Server reads the counts every sweep interval,
// tells the TrafficWaker which backends moved bytes, and closes a
// connection on which nothing moved for its ClientIdleTimeout. No timer
// per connection: the data path never re-arms anything.

// Bounds on the sweep interval, which is a quarter of the shortest
// timeout watched: a quiet connection is closed between its timeout and
// a quarter more.
const (
	minSweep = 10 * time.Millisecond
	maxSweep = time.Second
)

// sweepInterval is a quarter of the shortest timeout of table's routes,
// within [minSweep, maxSweep]; 0 when no route needs watching.
func sweepInterval(table map[string][]Route) time.Duration {
	var shortest time.Duration
	for _, routes := range table {
		for _, r := range routes {
			for _, d := range []time.Duration{r.ClientIdleTimeout, r.TrafficIdle} {
				if d > 0 && (shortest == 0 || d < shortest) {
					shortest = d
				}
			}
		}
	}
	if shortest == 0 {
		return 0
	}
	return min(max(shortest/4, minSweep), maxSweep)
}

// watch sets c up to be watched by the sweeper per r, before it is
// spliced: its bytes are counted from the first.
func (c *proxyConn) watch(r *Route) {
	c.idleClose = r.ClientIdleTimeout
	// A connection that may not wake the app does not keep it up.
	c.traffic = r.TrafficIdle > 0 && !c.passive
	if c.traffic {
		if _, ok := c.s.Waker.(TrafficWaker); !ok {
			c.traffic = false
		}
	}
	c.counted = c.idleClose > 0 || c.traffic
}

// leasedBackend is one leased backend of an app, for TrafficWaker.
type leasedBackend struct {
	app      string
	upstream netip.AddrPort
}

// watchLocked adds c, being spliced, to the connections the sweeper
// reads, and starts the sweeper if it is not running. s.mu must be held.
func (s *Server) watchLocked(c *proxyConn) {
	if !c.counted {
		return
	}
	if s.watched == nil {
		s.watched = make(map[*proxyConn]struct{})
	}
	s.watched[c] = struct{}{}
	c.quietSince = time.Now()
	if !s.sweeping {
		s.sweeping = true
		s.wg.Add(1)
		go s.sweepLoop()
	}
}

// sweepLoop sweeps every sweep interval until no connection is watched
// or the server shuts down.
func (s *Server) sweepLoop() {
	defer s.wg.Done()
	t := time.NewTimer(s.sweepEvery())
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			s.mu.Lock()
			s.sweeping = false
			s.mu.Unlock()
			return
		case now := <-t.C:
			if !s.sweep(now) {
				return
			}
			t.Reset(s.sweepEvery())
		}
	}
}

// sweepEvery is the current sweep interval: the last Apply's.
func (s *Server) sweepEvery() time.Duration {
	if d := time.Duration(s.sweepNanos.Load()); d > 0 {
		return d
	}
	return maxSweep
}

// sweep reads the watched connections' counts once: a connection on which
// bytes moved since the last sweep is quiet from now on, and its backend
// is told to the TrafficWaker when it counts traffic; one quiet for its
// ClientIdleTimeout is closed. It returns false, the sweeper ending, when
// no connection is left to watch.
func (s *Server) sweep(now time.Time) bool {
	var (
		closing []*proxyConn
		active  map[leasedBackend]struct{}
	)
	s.mu.Lock()
	for c := range s.watched {
		if n := c.moved.Load(); n != c.swept {
			c.swept, c.quietSince = n, now
			if c.traffic {
				if active == nil {
					active = make(map[leasedBackend]struct{})
				}
				active[leasedBackend{c.app, c.up}] = struct{}{}
			}
			continue
		}
		if c.idleClose > 0 && now.Sub(c.quietSince) >= c.idleClose {
			delete(s.watched, c)
			closing = append(closing, c)
		}
	}
	more := len(s.watched) > 0
	if !more {
		s.sweeping = false
	}
	for _, c := range closing {
		c.closeQuietLocked()
	}
	s.mu.Unlock()
	if tw, ok := s.Waker.(TrafficWaker); ok {
		for b := range active {
			tw.Traffic(b.app, b.upstream)
		}
	}
	if log := s.logger(); len(closing) > 0 && log.Enabled(context.Background(), slog.LevelDebug) {
		for _, c := range closing {
			log.Debug("closing connection: client_idle_timeout", slog.String("app", c.app),
				slog.String("client", c.clientAddr()), slog.Duration("quiet", now.Sub(c.quietSince)))
		}
	}
	return more
}

// closeQuietLocked closes c, spliced and quiet for its ClientIdleTimeout:
// both sockets get a FIN, as when both sides end. s.mu must be held (c's
// upstream socket and loop are set under it).
func (c *proxyConn) closeQuietLocked() {
	if c.lc != nil {
		c.lc.loop.closeQuiet(c.lc)
		return
	}
	// The goroutines' reads fail at once; the last of them finishes c.
	c.quietClosed.Store(true)
	c.client.Close()
	if c.upstream != nil {
		c.upstream.Close()
	}
}
