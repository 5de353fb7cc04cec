package l4

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultDropLogInterval is the window over which connections closed
// unserved are counted into one log line per app and reason.
const DefaultDropLogInterval = time.Second

// dropLog counts the connections closed unserved, per app and message: a
// flood refused by max_pending writes two lines a second per app (the
// first refusal, then how many followed), not a line per connection.
type dropLog struct {
	mu     sync.Mutex
	closed bool // Shutdown flushed it: log directly from now on
	counts map[dropKey]*dropCount
}

type dropKey struct{ app, msg string }

type dropCount struct {
	n     int
	attrs []slog.Attr // the last drop's, for the summary
	timer *time.Timer
}

// logDrop logs why a connection of app is being closed: the first of an
// interval at once, the others of that interval counted into one line at
// its end; only information, line by line, while the server shuts down
// (its wakes and dials are cancelled on purpose then).
func (s *Server) logDrop(app, msg string, attrs ...slog.Attr) {
	attrs = append([]slog.Attr{slog.String("app", app)}, attrs...)
	d := &s.drops
	d.mu.Lock()
	if d.closed || s.ctx.Err() != nil {
		d.mu.Unlock()
		s.logger().LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
		return
	}
	k := dropKey{app, msg}
	if c, ok := d.counts[k]; ok {
		c.n++
		c.attrs = attrs
		d.mu.Unlock()
		return
	}
	if d.counts == nil {
		d.counts = make(map[dropKey]*dropCount)
	}
	c := &dropCount{}
	d.counts[k] = c
	s.wg.Add(1) // done by flushDrop, or by closeDrops if it stops the timer
	c.timer = time.AfterFunc(durationOr(s.DropLogInterval, DefaultDropLogInterval), func() {
		defer s.wg.Done()
		s.flushDrop(k)
	})
	d.mu.Unlock()
	s.logger().LogAttrs(context.Background(), slog.LevelWarn, msg, attrs...)
}

// flushDrop ends k's interval, logging how many drops it counted.
func (s *Server) flushDrop(k dropKey) {
	d := &s.drops
	d.mu.Lock()
	c := d.counts[k]
	delete(d.counts, k)
	d.mu.Unlock()
	if c != nil {
		s.logDropCount(k, c)
	}
}

func (s *Server) logDropCount(k dropKey, c *dropCount) {
	if c.n == 0 {
		return
	}
	every := durationOr(s.DropLogInterval, DefaultDropLogInterval)
	attrs := append(c.attrs, slog.Int("more", c.n), slog.Duration("within", every))
	s.logger().LogAttrs(context.Background(), slog.LevelWarn, k.msg+" (and more like it)", attrs...)
}

// closeDrops logs what the intervals still running counted, at once:
// Shutdown does not wait for their timers.
func (s *Server) closeDrops() {
	d := &s.drops
	d.mu.Lock()
	d.closed = true
	counts := d.counts
	d.counts = nil
	var stopped []dropKey
	for k, c := range counts {
		if c.timer.Stop() {
			stopped = append(stopped, k)
		}
	}
	d.mu.Unlock()
	for _, k := range stopped {
		s.logDropCount(k, counts[k])
		s.wg.Done()
	}
}
