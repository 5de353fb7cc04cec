package l4

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// udpSuffix marks a UDP listen address in the table ("127.0.0.1:53/udp").
const udpSuffix = "/udp"

// udpRecvBuffer is the receive buffer of a UDP listen socket: datagrams
// that arrive while its receiver is busy wait there rather than being
// dropped. A daemon running as root sets it past net.core.rmem_max
// (SO_RCVBUFFORCE), as the kernel lets it; others get what rmem_max allows.
const udpRecvBuffer = 4 << 20

// udpSendBuffer is the send buffer of a UDP listen socket, which sends
// the replies of all its flows: bursts of replies wait there rather than
// being dropped. Forced as udpRecvBuffer is.
const udpSendBuffer = 4 << 20

// DefaultUDPMaxFlows bounds the flows of one UDP listen address when
// Server.UDPMaxFlows is zero.
const DefaultUDPMaxFlows = 4096

var errTooManyFlows = errors.New("the address has as many flows as it may hold")

func (s *Server) udpMaxFlows() int {
	if s.UDPMaxFlows > 0 {
		return s.UDPMaxFlows
	}
	return DefaultUDPMaxFlows
}

func isUDPKey(addr string) bool { return strings.HasSuffix(addr, udpSuffix) }

// udpState is the Server's UDP side: its listeners (under s.mu), the
// queues of waking apps and the pool of batches.
type udpState struct {
	listeners map[string]*udpListener
	nextLoop  int // the event loop the next listener goes to
	queues    udpQueues
	batches   sync.Pool // *udpBatch
}

func (s *Server) getBatch() *udpBatch {
	if b, ok := s.udp.batches.Get().(*udpBatch); ok {
		return b
	}
	return newUDPBatch()
}

func (s *Server) putBatch(b *udpBatch) { s.udp.batches.Put(b) }

// udpListener is one UDP listen address: its socket, the event loop or
// goroutine that receives on it, and the flows of its clients. A UDP
// address has a single route: datagrams carry no name to share it by.
type udpListener struct {
	s     *Server
	addr  string // the table key, with its suffix
	laddr *net.UDPAddr
	conn  *net.UDPConn
	rc    syscall.RawConn
	route atomic.Pointer[Route]
	// accepting: the receiving loop or goroutine runs. Under s.mu.
	accepting bool

	// On an event loop (udp_loop_linux.go), set before it is handed
	// over: conn is closed and the loop receives on fd, a dup, which its
	// closer closes under fdMu. slot is the loop's own.
	loop *eventLoop
	fdMu sync.Mutex
	fd   int
	slot int32

	mu     sync.Mutex
	flows  map[netip.AddrPort]*udpFlow
	closed bool
	// order holds the flows in the order they were made, for eviction
	// (see evictableLocked); ended and replied ones are skipped there.
	order []*udpFlow

	// The receiving goroutine's own: the run it sends, through readFn and
	// writeFn, method values made once so that a datagram allocates
	// nothing.
	recvErr         error
	sendMsgs        []mmsghdr
	sendHdr         int
	sendBytes       int
	sendSkipped     int
	sendErr         error
	readFn, writeFn func(fd uintptr) bool
	lastLog         time.Time
}

// bindUDPLocked binds the UDP address addr, without receiving on it yet,
// adding a failure to errs. s.mu must be held.
func (s *Server) bindUDPLocked(addr string, routes []Route, errs map[string]error) map[string]error {
	if _, ok := s.udp.listeners[addr]; ok {
		return errs
	}
	l, err := s.listenUDP(addr, routes)
	if err != nil {
		if errs == nil {
			errs = make(map[string]error)
		}
		errs[addr] = fmt.Errorf("listening on %s for %s: %w", addr, appNames(routes), err)
		return errs
	}
	if s.udp.listeners == nil {
		s.udp.listeners = make(map[string]*udpListener)
	}
	s.udp.listeners[addr] = l
	return errs
}

func (s *Server) listenUDP(addr string, routes []Route) (*udpListener, error) {
	if len(routes) != 1 {
		return nil, fmt.Errorf("a UDP address takes one app, got %d", len(routes))
	}
	ua, err := net.ResolveUDPAddr("udp", strings.TrimSuffix(addr, udpSuffix))
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, err
	}
	setRecvBuffer(rc, udpRecvBuffer)
	setSendBuffer(rc, udpSendBuffer)
	l := &udpListener{s: s, addr: addr, laddr: conn.LocalAddr().(*net.UDPAddr), conn: conn, rc: rc,
		fd: -1, slot: -1, flows: make(map[netip.AddrPort]*udpFlow)}
	l.readFn, l.writeFn = l.read, l.write
	l.route.Store(&routes[0])
	return l, nil
}

// closeRemovedUDPLocked closes the UDP listeners table no longer has,
// first, so that a new spelling of an address can bind. s.mu must be held.
func (s *Server) closeRemovedUDPLocked(table map[string][]Route) {
	for addr, l := range s.udp.listeners {
		if _, ok := table[addr]; !ok {
			delete(s.udp.listeners, addr)
			l.close()
		}
	}
}

// startUDPLocked gives the UDP listeners their route and starts receiving
// on new ones. s.mu must be held.
func (s *Server) startUDPLocked(table map[string][]Route) {
	for addr, l := range s.udp.listeners {
		if routes := table[addr]; len(routes) > 0 {
			r := routes[0]
			l.route.Store(&r)
		}
		if !l.accepting {
			l.accepting = true
			s.wg.Add(1)
			if lp := s.udpLoopLocked(); lp != nil && l.toLoop(lp) {
				lp.addUDPListener(l)
			} else {
				go l.recvLoop()
			}
		}
	}
}

// udpLoopLocked returns the event loop for a new UDP listener, in turn;
// nil when datagrams are to be moved by goroutines. s.mu must be held.
func (s *Server) udpLoopLocked() *eventLoop {
	loops := s.eventLoopsLocked()
	if len(loops) == 0 {
		return nil
	}
	s.udp.nextLoop++
	return loops[s.udp.nextLoop%len(loops)]
}

// toLoop makes l's socket the loop's: a dup of it, and conn closed so
// that Go's netpoller is not woken by its datagrams. False (l unchanged)
// if the dup failed.
func (l *udpListener) toLoop(lp *eventLoop) bool {
	dup := -1
	var derr error
	if err := l.rc.Control(func(fd uintptr) {
		dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || derr != nil {
		return false
	}
	l.conn.Close()
	l.fd, l.loop = dup, lp
	return true
}

// closeUDPLocked closes every UDP listener (Shutdown). s.mu must be held.
func (s *Server) closeUDPLocked() {
	for addr, l := range s.udp.listeners {
		delete(s.udp.listeners, addr)
		l.close()
	}
}

// close stops receiving and ends every flow: their replies would have
// to leave from this socket.
func (l *udpListener) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	// Under fdMu, which orders it with a loop giving l back to a goroutine
	// (toGoroutineLocked).
	l.fdMu.Lock()
	if lp := l.loop; lp != nil {
		// Closed here rather than by the loop, so that the address is
		// free when close returns; fdMu keeps the loop off the number.
		if l.fd >= 0 {
			unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_DEL, l.fd, nil)
			syscall.Close(l.fd)
			l.fd = -1
		}
		l.fdMu.Unlock()
		l.closeFlows()
		lp.removeUDPListener(l)
		return
	}
	conn := l.conn
	l.fdMu.Unlock()
	conn.Close()
	if !l.accepting {
		l.closeFlows()
	}
}

func (l *udpListener) closeFlows() {
	l.mu.Lock()
	flows := make([]*udpFlow, 0, len(l.flows))
	for _, f := range l.flows {
		flows = append(flows, f)
	}
	l.mu.Unlock()
	for _, f := range flows {
		f.close()
	}
}

// recvLoop receives batches of datagrams and passes each to its client's
// flow until the socket is closed.
func (l *udpListener) recvLoop() {
	defer l.s.wg.Done()
	defer l.closeFlows()
	for {
		if err := l.rc.Read(l.readFn); err != nil {
			return // closed
		}
		l.logError("receiving datagrams failed", l.recvErr)
	}
}

// read is l.rc.Read's function: it receives and dispatches batches until
// one comes back short, then returns false to wait. Why inside: each
// rc.Read forgets the readiness reported before it, so a loop around it
// must read until EAGAIN; within one call, a short batch means the socket
// was empty and any later datagram is reported. True after an error.
func (l *udpListener) read(fd uintptr) bool {
	b := l.s.getBatch()
	defer l.s.putBatch(b)
	for {
		switch err := b.recvmmsg(fd, true); err {
		case nil:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			l.recvErr = err
			return true
		}
		l.dispatch(b)
		if b.n < udpBatchSize {
			return false
		}
	}
}

// write is a flow's rc.Write function for l.sendMsgs: it waits while
// the socket has no room.
func (l *udpListener) write(fd uintptr) bool {
	rest, n, skipped, again, err := sendUp(fd, l.sendMsgs, l.sendHdr)
	l.sendMsgs = rest
	l.sendBytes += n
	l.sendSkipped += skipped
	if again {
		return false
	}
	l.sendErr = err
	return true
}

// dispatch forwards every datagram of b: runs of datagrams from one
// client go to its flow in one sendmmsg.
func (l *udpListener) dispatch(b *udpBatch) {
	for i := 0; i < b.n; {
		from := b.from(i)
		j := i + 1
		for j < b.n && b.from(j) == from {
			j++
		}
		for i < j {
			f, ok := l.flowFor(from, b, i)
			if !ok {
				i++ // queued or dropped
				continue
			}
			l.forward(f, b, i, j)
			i = j
		}
	}
}

// forward sends datagrams [i, j) of b up f's connected socket.
func (l *udpListener) forward(f *udpFlow, b *udpBatch, i, j int) {
	if l.loop != nil {
		l.forwardRaw(f, b, i, j)
		return
	}
	l.sendMsgs, l.sendHdr, l.sendErr = b.prepareSend(i, j, f.header, nil, 0), len(f.header), nil
	l.sendBytes, l.sendSkipped = 0, 0
	err := f.rc.Write(l.writeFn)
	if err == nil {
		err = l.sendErr
	}
	// Unsent ones: refused one by one, no room (ENOBUFS), or the socket
	// gone.
	l.s.dropped(f.app, l.sendSkipped+len(l.sendMsgs))
	f.sent.Add(int64(l.sendBytes))
	if err != nil {
		// Refused: the program's socket is gone (it exited). The next
		// datagram makes a new flow, which wakes the app again.
		f.close()
		return
	}
	f.touch()
}

// flowFor finds the flow of client from for datagram i of b, making one if
// there is none. ok is false when the datagram was queued for a waking
// flow, or dropped.
func (l *udpListener) flowFor(from netip.AddrPort, b *udpBatch, i int) (f *udpFlow, ok bool) {
	l.mu.Lock()
	f = l.flows[from]
	if f != nil && f.dead {
		f = nil // ending: the datagram starts a new flow
	}
	if f != nil && f.ready {
		// Under l.mu, where expire decides: a flow that forwards this
		// datagram cannot time out under it.
		f.touch()
		l.mu.Unlock()
		return f, true
	}
	if f != nil {
		l.queueLocked(f, b.data(i))
		l.mu.Unlock()
		return nil, false
	}
	full := len(l.flows) >= l.s.udpMaxFlows()
	var victim *udpFlow
	if full {
		victim = l.evictableLocked()
	}
	l.mu.Unlock()
	r := l.route.Load()
	if victim != nil {
		// Out of the table at once; what it sent went up already, what
		// it still had queued is counted dropped.
		victim.close()
		full = false
	}
	if full {
		// Each flow holds a socket, a slot or goroutine and a lease: addresses
		// made up by the thousand must not take them all.
		l.s.dropped(r.App, 1)
		l.logError("too many UDP flows, dropping datagram from a new client", errTooManyFlows)
		return nil, false
	}
	f = l.newFlow(r, b, i)
	if rw, isReady := l.s.Waker.(ReadyWaker); isReady {
		if upstream, release, ok := rw.TryWake(r.App); ok {
			connect := f.connect
			if l.loop != nil {
				connect = f.connectRaw
			}
			if err := connect(upstream, release); err != nil {
				l.s.logDrop(r.App, "connecting to the upstream failed, dropping datagram", slog.Any("err", err))
				l.s.dropped(r.App, 1)
				return nil, false
			}
			l.mu.Lock()
			l.addFlowLocked(f)
			l.mu.Unlock()
			if !f.start() {
				l.s.dropped(r.App, 1) // the listener closed meanwhile
				return nil, false
			}
			return f, true
		}
	}
	// The app must be waited for: the flow queues until it is ready.
	l.mu.Lock()
	if l.closed || !l.queueLocked(f, b.data(i)) {
		l.mu.Unlock()
		return nil, false
	}
	l.addFlowLocked(f)
	l.mu.Unlock()
	l.s.wg.Add(1)
	go f.wake()
	return nil, false
}

// addFlowLocked puts f in the table. l.mu must be held.
func (l *udpListener) addFlowLocked(f *udpFlow) {
	l.flows[f.client] = f
	if len(l.order) >= 2*l.s.udpMaxFlows() {
		// Drop the ended and replied ones, so that order stays in
		// proportion to the table.
		live := l.order[:0]
		for _, g := range l.order {
			if l.flows[g.client] == g && !g.dead && !g.replied.Load() {
				live = append(live, g)
			}
		}
		clear(l.order[len(live):])
		l.order = live
	}
	l.order = append(l.order, f)
}

// evictableLocked takes out of order the oldest flow in the table that
// has never carried a reply, or returns nil if every flow has had one.
// Why: a full table would turn away every new client until flows time
// out, so a trickle of datagrams from made-up addresses would lock the
// address; like conntrack's early drop, a flow nobody answered is the
// one to give up. l.mu must be held.
func (l *udpListener) evictableLocked() *udpFlow {
	for len(l.order) > 0 {
		f := l.order[0]
		l.order[0] = nil
		l.order = l.order[1:]
		if l.flows[f.client] == f && !f.dead && !f.replied.Load() {
			return f
		}
	}
	return nil
}

// queueLocked copies a datagram into f's queue if the app's budget has
// room, and counts it dropped if not. l.mu must be held.
func (l *udpListener) queueLocked(f *udpFlow, data []byte) bool {
	if !l.s.udp.queues.take(f.app, len(data), f.maxPending) {
		l.s.dropped(f.app, 1)
		return false
	}
	f.queue = append(f.queue, append([]byte(nil), data...))
	return true
}

// dropped counts n datagrams of app dropped.
func (s *Server) dropped(app string, n int) {
	if o := s.udpObserver(); o != nil && n > 0 {
		o.DatagramsDropped(app, n)
	}
}

// logError logs a receive error or a drop, at most once per
// ErrorLogInterval. Only the receiving loop or goroutine calls it.
func (l *udpListener) logError(msg string, err error) {
	if errors.Is(err, net.ErrClosed) {
		return
	}
	if now := time.Now(); now.Sub(l.lastLog) >= durationOr(l.s.ErrorLogInterval, DefaultErrorLogInterval) {
		l.lastLog = now
		l.s.logger().Warn(msg, slog.String("listen", l.addr), slog.Any("err", err))
	}
}

// setRecvBuffer sets the receive buffer of rc's socket to size, forcing it
// where the daemon may.
func setRecvBuffer(rc syscall.RawConn, size int) {
	_ = rc.Control(func(fd uintptr) {
		if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size) != nil {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
		}
	})
}

// setSendBuffer sets the send buffer of rc's socket to size, forcing it
// where the daemon may.
func setSendBuffer(rc syscall.RawConn, size int) {
	_ = rc.Control(func(fd uintptr) {
		if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUFFORCE, size) != nil {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, size)
		}
	})
}
