package l4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrServerClosed is returned by Apply, for every address, after Shutdown.
var ErrServerClosed = errors.New("l4: server closed")

// Defaults for the Server's tunables, used when a field is zero.
const (
	DefaultAcceptBackoffMin   = 5 * time.Millisecond
	DefaultAcceptBackoffMax   = time.Second
	DefaultDialTimeout        = 10 * time.Second
	DefaultDialAttemptTimeout = 25 * time.Millisecond
	DefaultDialAttemptMax     = 400 * time.Millisecond
	DefaultDialRefusedRetries = 8
	DefaultDialRefusedDelay   = 5 * time.Millisecond
	DefaultErrorLogInterval   = 5 * time.Second
)

// Server accepts connections on every listen address of its table, wakes the
// routed app through Waker and splices the connection to the app's upstream.
//
// A Server is configured through its exported fields before the first call to
// Apply and must not be copied after that. Waker is required; every other
// field has a usable zero value.
type Server struct {
	// Waker leases a ready backend for an app. Required.
	Waker Waker
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger

	// AcceptBackoffMin is the first pause after a failed Accept (EMFILE,
	// ECONNABORTED...); it doubles on every further failure up to
	// AcceptBackoffMax. Zero means 5ms and 1s, as in net/http.
	AcceptBackoffMin time.Duration
	AcceptBackoffMax time.Duration

	// DialTimeout bounds all attempts to connect to an upstream for one
	// connection, retries included. Zero means 10s.
	DialTimeout time.Duration
	// DialAttemptTimeout is the timeout of the first connect attempt; it
	// doubles on every retry up to DialAttemptMax. A freshly started program
	// with a tiny listen backlog drops SYNs while its queue is full, and the
	// kernel would retransmit them only after a second: a short attempt
	// abandoned and retried with a fresh SYN gets in as soon as the program
	// has accepted. Zero means 25ms and 400ms.
	DialAttemptTimeout time.Duration
	DialAttemptMax     time.Duration
	// DialRefusedRetries is how many times a connect refused by the upstream
	// (a program that reported ready but whose socket is not quite there, or
	// one that just re-bound) is retried, DialRefusedDelay apart (doubling),
	// before the connection fails. Zero means 8 retries from 5ms; a negative
	// value disables these retries.
	DialRefusedRetries int
	DialRefusedDelay   time.Duration

	// DialConcurrency is how many connects to one upstream address may be
	// in flight at once. A program with a listen backlog of 5 that is sent
	// many handshakes at once answers some SYNs, then drops their final
	// ACKs when its accept queue turns out full: the proxy believes it is
	// connected, the program does not, and nothing moves until the
	// program's SYN-ACK is retransmitted a second later (or never, with
	// SYN cookies). One handshake at a time never overflows the queue;
	// loopback handshakes take microseconds. Zero means 1.
	DialConcurrency int

	// ErrorLogInterval rate-limits repeated logs of the same kind (accept
	// errors and connections matching no app, per listener). Zero means 5s.
	ErrorLogInterval time.Duration

	// PeekTimeout bounds, from accept, how long a connection on an address
	// shared by name (routes with SNI or Host) may take to send the TLS
	// ClientHello or HTTP headers that name its app; a client still silent
	// then is closed without waking anything. Addresses with a single
	// default route are never peeked. Zero means 5s.
	PeekTimeout time.Duration

	// DropLogInterval is the window over which the connections of one
	// app closed unserved for one reason are counted into one log line
	// (the first is logged at once). Zero means 1s.
	DropLogInterval time.Duration

	// Observer, when set, is told of every spliced connection once it has
	// ended (metrics): once per connection, never per read.
	Observer Observer
	// RefusalReason, when set, names the reason (a short fixed word) for
	// which a Waker's error refuses a connection, for
	// Observer.ConnectionRefused; "other" when nil.
	RefusalReason func(error) string

	// DataPath chooses how spliced connections move their bytes:
	// DataPathLoop (the default, "") hands them to the epoll loops;
	// DataPathGoroutines copies each with two goroutines
	// on Go's netpoller. If the loop cannot be created (epoll or eventfd
	// refused), the goroutines are used.
	DataPath string

	// EventLoops is how many event loops carry connections on
	// DataPathLoop, each a goroutine of its own. Every loop accepts
	// for every listener (the kernel wakes one that is waiting, so a busy
	// loop leaves new connections to an idle one), and connections that
	// had to wait (a wake, a peek) are dealt to the loops in turn. Zero
	// means one; at most MaxEventLoops.
	EventLoops int

	// UDPMaxFlows bounds the flows (client addresses) of one UDP listen
	// address. A new client beyond it takes the place of the oldest flow
	// that never carried a reply; when every flow has had one, its
	// datagram is dropped and counted. Zero means DefaultUDPMaxFlows.
	UDPMaxFlows int

	// CheckSocketDir, when set, judges the directory of a unix: listen
	// address's socket file before the file is made or a stale one
	// removed there: an error refuses the address (see listenUnix). The
	// daemon accepts only a directory that nobody but root and its own
	// user can change.
	CheckSocketDir func(dir string) error

	// noSplice keeps the event loop on read/write even for bulk, so that
	// tests exercise its partial-write path at every size.
	noSplice bool
	// dialErrorHook, when set, sees every failed connect attempt; tests use
	// it to act right after a refused connect.
	dialErrorHook func(error)
	// noFdHook, when set, is called each time a client's socket could not
	// be wrapped for lack of descriptors (tests).
	noFdHook func()

	mu        sync.Mutex
	inited    bool
	closed    bool
	ctx       context.Context // cancelled by Shutdown: held wakes and dials end
	cancel    context.CancelFunc
	listeners map[string]*listener
	conns     map[*proxyConn]struct{}
	wg        sync.WaitGroup // accept loops and connection goroutines
	bufs      sync.Pool      // *[]byte of bufSize, for copyConn
	peekBufs  sync.Pool      // *[]byte of peekBufSize, for peek

	// watched are the spliced connections the sweeper reads (quiet.go);
	// sweeping is true while it runs. sweepNanos is its interval.
	watched    map[*proxyConn]struct{}
	sweeping   bool
	sweepNanos atomic.Int64

	loops    []*eventLoop // started on first use, under mu
	nextLoop int          // the loop the next handed-over connection goes to
	nextLID  int32        // listener ids in the loops' epoll data
	loopFail bool         // no loop could be created: goroutines only

	groups map[string]*handoffGroup // handed-off apps, under mu

	dialMu    sync.Mutex
	dialGates map[target]*dialGate

	drops dropLog
	udp   udpState // UDP listeners and flows (udp_listener.go)
}

// DataPath values for Server.DataPath.
const (
	// DataPathLoop moves spliced connections to edge-triggered epoll
	// loops, each a goroutine that blocks only in epoll_wait: raw
	// non-blocking read/write through one
	// buffer, splice(2) through a per-connection pipe once a direction
	// turns bulk.
	DataPathLoop = "loop"
	// DataPathGoroutines copies each spliced connection with two
	// goroutines on Go's netpoller.
	DataPathGoroutines = "goroutines"
)

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// initLocked prepares the server's state on first use. s.mu must be held.
func (s *Server) initLocked() {
	if s.inited {
		return
	}
	s.inited = true
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.listeners = make(map[string]*listener)
	s.conns = make(map[*proxyConn]struct{})
}

// Apply makes the listeners match table, which maps a listen address to its
// routes. Addresses new to the table are bound; addresses already listening
// keep their socket and their open connections, and only their routes are
// swapped (atomically: a connection accepted after Apply returns uses the new
// routes); addresses no longer in the table stop listening, but connections
// already accepted on them keep flowing until they end.
//
// An address whose routes carry SNI or Host is shared by name: each
// connection's first bytes are peeked (see PeekTimeout) and matched against
// the routes' names, exact names before "*." wildcards, the longest wildcard
// first; a connection matching none goes to the route without names, or is
// closed if there is none. A peeked connection that was accepted before an
// Apply is matched against the routes in force when its name is known.
//
// Apply returns one error per address that could not be bound, keyed by
// address, naming the apps that wanted it; nil if all went well. Other
// addresses are applied regardless.
//
// Addresses bound by an earlier Bind start accepting here, with the routes
// of table.
func (s *Server) Apply(table map[string][]Route) map[string]error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return closedErrors(table)
	}
	s.initLocked()

	// Close removed addresses first, so that a new spelling of the same
	// address (localhost:80 for 127.0.0.1:80) can bind right after.
	for addr, l := range s.listeners {
		if _, ok := table[addr]; !ok {
			delete(s.listeners, addr)
			l.closeLocked()
		}
	}
	s.closeRemovedUDPLocked(table)
	errs := s.bindLocked(table)
	s.sweepNanos.Store(int64(sweepInterval(table)))
	s.startUDPLocked(table)
	for addr, routes := range table {
		l, ok := s.listeners[addr]
		if !ok {
			continue // could not be bound
		}
		l.routes.Store(newRouteSet(routes))
		if l.group != nil && len(routes) == 1 {
			l.group.setMax(routes[0].MaxPrograms)
		}
		if !l.accepting {
			l.startLocked()
		}
	}
	return errs
}

// Bind binds every address of table that is not listening yet, but does
// not accept on it: a client connecting meanwhile completes its handshake
// and waits in the kernel's accept queue, its bytes unread, until an Apply
// whose table has the address starts accepting. Addresses already
// listening keep their routes, and nothing is closed. Errors are returned
// as by Apply.
//
// This lets a caller bind first, and only if that worked, tell its Waker
// of new apps and then Apply: no connection reaches the Waker for an app
// it does not know yet, and an address that cannot be bound changes
// nothing. An address bound but left out of the next Apply's table is
// closed by it.
func (s *Server) Bind(table map[string][]Route) map[string]error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return closedErrors(table)
	}
	s.initLocked()
	return s.bindLocked(table)
}

// bindLocked binds the addresses of table that have no listener, without
// accepting on them. s.mu must be held.
func (s *Server) bindLocked(table map[string][]Route) map[string]error {
	var errs map[string]error
	for addr, routes := range table {
		if l, ok := s.listeners[addr]; ok {
			if l.handoff == handoffOf(routes) && (l.sockPath == "" || l.sock == socketOf(routes)) {
				continue
			}
			// Handed off now, or no longer: the socket is watched
			// another way, so it is bound afresh. A socket file with a
			// new mode or owner is made afresh too.
			delete(s.listeners, addr)
			l.closeLocked()
		}
		if isUDPKey(addr) {
			errs = s.bindUDPLocked(addr, routes, errs)
			continue
		}
		l, err := s.listen(addr, newRouteSet(routes))
		if err != nil {
			if errs == nil {
				errs = make(map[string]error)
			}
			errs[addr] = fmt.Errorf("listening on %s for %s: %w", addr, appNames(routes), err)
			continue
		}
		s.listeners[addr] = l
	}
	return errs
}

// closedErrors is ErrServerClosed for every address of table.
func closedErrors(table map[string][]Route) map[string]error {
	if len(table) == 0 {
		return nil
	}
	errs := make(map[string]error, len(table))
	for addr, routes := range table {
		errs[addr] = fmt.Errorf("listening on %s for %s: %w", addr, appNames(routes), ErrServerClosed)
	}
	return errs
}

// appNames formats the apps of routes for an error: `app "web"` or
// `apps "a", "b"`.
func appNames(routes []Route) string {
	names := make([]string, 0, len(routes))
	for _, r := range routes {
		names = append(names, fmt.Sprintf("%q", r.App))
	}
	sort.Strings(names)
	if len(names) == 1 {
		return "app " + names[0]
	}
	return "apps " + strings.Join(names, ", ")
}

// Addr returns the bound address of listen, a key of the table last applied
// or bound (useful with port 0), or nil if that address is not listening.
func (s *Server) Addr(listen string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.listeners[listen]
	if !ok {
		if ul, ok := s.udp.listeners[listen]; ok {
			return ul.conn.LocalAddr()
		}
		return nil
	}
	return l.ln.Addr()
}

// Shutdown stops the server: it closes every listener, cancels the context
// of wakes and dials in progress and closes the connections still held
// waiting for a wake at once, then waits for spliced connections to finish
// until ctx ends, when it closes them. It returns after every goroutine the
// server started has exited, with ctx's error if connections had to be cut.
// Apply after Shutdown binds nothing.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.initLocked()
	s.cancel()
	for addr, l := range s.listeners {
		delete(s.listeners, addr)
		l.closeLocked()
	}
	s.closeUDPLocked()
	for c := range s.conns {
		if !c.spliced {
			// Still held (waking or dialing): the client gets its close
			// now, whatever the Waker does with the cancelled context.
			// A raw descriptor is only shut down: its goroutine closes it.
			if c.client != nil {
				c.client.Close()
			} else {
				syscall.Shutdown(c.cfd, syscall.SHUT_RDWR)
			}
		}
	}
	s.mu.Unlock()

	// Drops from now on are logged line by line; the counts so far now.
	s.closeDrops()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.stopLoop()
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.closeBoth()
	}
	s.mu.Unlock()
	<-done
	s.stopLoop()
	return ctx.Err()
}
