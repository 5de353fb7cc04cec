// Package httpcap bounds the daemon's own HTTP endpoints (metrics, the
// admin API): idle keep-alive connections are closed, a client gets a
// while to send its request's headers, and at most so many connections are
// served at once, the others waiting in the listen backlog, so that no
// client can take the descriptors the proxied apps need.
package httpcap

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Defaults for Limits' zero fields.
const (
	DefaultMaxConns          = 64
	DefaultIdleTimeout       = 30 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
)

// Limits bound one endpoint; zero fields mean the defaults.
type Limits struct {
	// MaxConns is how many connections are open at once; the next one
	// is accepted once one of them closes.
	MaxConns int
	// IdleTimeout closes a keep-alive connection that sends no request
	// for this long.
	IdleTimeout time.Duration
	// ReadHeaderTimeout closes a connection whose request headers take
	// longer than this.
	ReadHeaderTimeout time.Duration
}

// Apply sets srv's timeouts and returns ln capped at MaxConns, for
// srv.Serve.
func (l Limits) Apply(srv *http.Server, ln net.Listener) net.Listener {
	srv.IdleTimeout = or(l.IdleTimeout, DefaultIdleTimeout)
	srv.ReadHeaderTimeout = or(l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	n := l.MaxConns
	if n <= 0 {
		n = DefaultMaxConns
	}
	return &capped{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{})}
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// capped accepts only while it has a free slot: a connection beyond the
// cap stays in the kernel's backlog, not accepted and reset.
type capped struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (c *capped) Accept() (net.Conn, error) {
	select {
	case c.slots <- struct{}{}:
	case <-c.done:
		return nil, net.ErrClosed
	}
	conn, err := c.Listener.Accept()
	if err != nil {
		<-c.slots
		return nil, err
	}
	return &slotConn{Conn: conn, free: func() { <-c.slots }}, nil
}

func (c *capped) Close() error {
	c.closeOnce.Do(func() { close(c.done) })
	return c.Listener.Close()
}

// slotConn gives its slot back when it is closed, once.
type slotConn struct {
	net.Conn
	once sync.Once
	free func()
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.free)
	return err
}
