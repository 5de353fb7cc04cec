package l4

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultUDPFlowTimeout ends a flow that has carried no datagram either
// way for this long, when the Route does not say.
const DefaultUDPFlowTimeout = 60 * time.Second

// udpFlow is one client address of a UDP listener: DynaPM's own socket
// connected to the upstream, so that the program tells clients apart and
// its replies come back to the right one, sent from the listen address.
// A flow holds a lease of its app from the first datagram to its end.
type udpFlow struct {
	l          *udpListener
	app        string
	client     netip.AddrPort
	name       unix.RawSockaddrInet6 // the client's address, to send to
	namelen    uint32
	maxPending int
	timeout    time.Duration
	// header goes ahead of every datagram up (proxy_protocol v2), or nil.
	header []byte

	// Under l.mu: ready once connected and the queue delivered (the
	// receiver sends straight up the flow's socket then), queue the
	// datagrams that came before; dead once closed.
	ready bool
	dead  bool
	queue [][]byte
	// Set before ready, under l.mu: read without it once ready.
	conn    *net.UDPConn
	rc      syscall.RawConn
	release func()
	timer   *time.Timer
	// lp, under l.mu: the event loop that owns fd (udp_loop_linux.go),
	// set with fd before the flow is ready; fd and slot are the loop's
	// from then on.
	lp   *eventLoop
	fd   int
	slot int32

	last           atomic.Int64 // UnixNano of the last datagram either way
	replied        atomic.Bool  // a reply came back: the flow is not evicted
	sent, received atomic.Int64
	closeOnce      sync.Once

	// The reply goroutine's own, as udpListener's.
	replyMsgs       []mmsghdr
	replyBytes      int
	replyDropped    int
	readFn, writeFn func(fd uintptr) bool
}

func (l *udpListener) newFlow(r *Route, b *udpBatch, i int) *udpFlow {
	f := &udpFlow{l: l, app: r.App, client: b.from(i), name: b.names[i], maxPending: r.MaxPending,
		timeout: durationOr(r.FlowTimeout, DefaultUDPFlowTimeout), fd: -1, slot: -1}
	f.namelen = sockaddrLen(&f.name)
	f.readFn, f.writeFn = f.read, f.write
	if r.ProxyProtocol == "v2" {
		dst := l.laddr.AddrPort()
		f.header = appendProxyHeaderDgram(nil, f.client, dst)
	}
	return f
}

// connect makes f's socket to upstream; f owns release from here on.
func (f *udpFlow) connect(upstream netip.AddrPort, release func()) error {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(upstream))
	if err != nil {
		release()
		return err
	}
	return f.take(conn, release)
}

// reserveUDPPort returns a UDP socket bound to 0.0.0.0:0, -1 when there
// is none: its port is the flow's, and no later bind to port 0 gets it.
func reserveUDPPort() int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{}); err != nil {
		unix.Close(fd)
		return -1
	}
	return fd
}

// connectReserved connects fd, from reserveUDPPort, to upstream and makes
// it a *net.UDPConn; fd is closed either way. It fails for an upstream
// not of fd's family: connect then dials as before.
func connectReserved(fd int, upstream netip.AddrPort) (*net.UDPConn, error) {
	addr := upstream.Addr().Unmap()
	if !addr.Is4() {
		unix.Close(fd)
		return nil, unix.EAFNOSUPPORT
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: addr.As4(), Port: int(upstream.Port())}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if sa, err := unix.Getsockname(fd); err != nil {
		unix.Close(fd)
		return nil, err
	} else if sa4, ok := sa.(*unix.SockaddrInet4); ok && sa4.Port == int(upstream.Port()) && sa4.Addr == addr.As4() {
		// Connected to itself: a fixed upstream's program has yet to bind
		// that port; let go of it at once.
		unix.Close(fd)
		return nil, unix.EADDRINUSE
	}
	file := os.NewFile(uintptr(fd), "udp")
	c, err := net.FileConn(file)
	file.Close()
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UDPConn)
	if !ok {
		c.Close()
		return nil, unix.EPROTOTYPE
	}
	return uc, nil
}

// take makes conn, connected to the upstream, f's socket; f owns conn and
// release from here on.
func (f *udpFlow) take(conn *net.UDPConn, release func()) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		release()
		return err
	}
	f.l.mu.Lock()
	f.conn, f.rc, f.release = conn, rc, release
	f.l.mu.Unlock()
	f.touch()
	return nil
}

// start makes a connected flow ready: its replies are received (loop or
// goroutine) and its timer runs. False if the flow was closed meanwhile (it is cleaned up then).
func (f *udpFlow) start() bool {
	l := f.l
	l.mu.Lock()
	if f.dead || l.closed {
		l.mu.Unlock()
		f.end()
		return false
	}
	f.ready = true
	f.timer = time.AfterFunc(f.timeout, f.expire)
	l.mu.Unlock()
	if f.lp != nil {
		f.lp.registerUDPFlow(f) // connected by connectRaw, on the loop
		return true
	}
	l.s.wg.Add(1)
	go f.replies()
	return true
}

// serveReplies starts receiving the upstream's replies to a flow that
// f.connect connected: on the listener's event loop, or in a goroutine.
func (f *udpFlow) serveReplies() {
	if lp := f.l.loop; lp != nil {
		f.handTo(lp)
		return
	}
	f.l.s.wg.Add(1)
	go f.replies()
}

// readyLocked makes the flow ready; on a loop, the waking goroutine's
// socket is done with and returned to be closed. l.mu must be held.
func (f *udpFlow) readyLocked() *net.UDPConn {
	f.ready = !f.dead
	if f.lp == nil {
		return nil
	}
	conn := f.conn
	f.conn = nil
	return conn
}

// wake leases the app, waiting while it starts, then delivers what was
// queued meanwhile in order and makes the flow ready.
func (f *udpFlow) wake() {
	l, s := f.l, f.l.s
	defer s.wg.Done()
	var (
		upstream netip.AddrPort
		release  func()
		err      error
		// early: the socket connected while the program started, to
		// earlyTo; nil when there is none.
		early   *net.UDPConn
		earlyTo netip.AddrPort
	)
	if ew, ok := s.Waker.(EarlyWaker); ok {
		// The flow's port is taken before the app's is picked: a socket
		// bound once the upstream is known could get the port its
		// program is about to bind.
		fd := reserveUDPPort()
		upstream, release, err = ew.WakeEarly(s.ctx, f.app, func(up netip.AddrPort) {
			if fd >= 0 {
				early, _ = connectReserved(fd, up)
				earlyTo, fd = up, -1
			}
		})
		if fd >= 0 {
			unix.Close(fd)
		}
	} else {
		upstream, release, err = s.Waker.Wake(s.ctx, f.app)
	}
	switch {
	case err == nil && early != nil && earlyTo == upstream:
		err = f.take(early, release)
	case err == nil:
		if early != nil {
			early.Close()
		}
		err = f.connect(upstream, release)
	case early != nil:
		early.Close()
	}
	if err != nil {
		l.mu.Lock()
		n := len(f.queue)
		l.mu.Unlock()
		s.logDrop(f.app, "waking app failed, dropping datagrams",
			slog.String("client", f.client.String()), slog.Int("datagrams", n), slog.Any("err", err))
		f.close()
		return
	}
	// The first datagram, which its client is waiting on, goes up before
	// the flow's timer and reply goroutine are set up: starting either can
	// cost a system call to wake a thread. Its reply waits in the socket.
	l.mu.Lock()
	dead := f.dead || l.closed
	var first [][]byte
	if !dead && len(f.queue) > 0 {
		first, f.queue = f.queue[:1:1], f.queue[1:]
	}
	l.mu.Unlock()
	if len(first) > 0 {
		err := f.sendQueued(first)
		s.udp.queues.give(f.app, first)
		if err != nil {
			f.close()
			return
		}
	}
	// Replies to the first datagrams may come while later ones are sent.
	l.mu.Lock()
	dead = dead || f.dead || l.closed
	if !dead {
		f.timer = time.AfterFunc(f.timeout, f.expire)
	}
	l.mu.Unlock()
	if dead {
		f.end()
		return
	}
	f.serveReplies()
	for {
		l.mu.Lock()
		q := f.queue
		f.queue = nil
		if len(q) == 0 || f.dead {
			conn := f.readyLocked()
			l.mu.Unlock()
			if conn != nil {
				conn.Close()
			}
			return
		}
		l.mu.Unlock()
		err := f.sendQueued(q)
		s.udp.queues.give(f.app, q)
		if err != nil {
			f.close()
			return
		}
	}
}

// sendQueued sends the datagrams of q up the flow's socket, in order.
func (f *udpFlow) sendQueued(q [][]byte) error {
	iovs := make([][2]unix.Iovec, len(q))
	msgs := make([]mmsghdr, len(q))
	for i, d := range q {
		v := iovs[i][:0]
		if len(f.header) > 0 {
			v = append(v, unix.Iovec{Base: &f.header[0]})
			v[0].SetLen(len(f.header))
		}
		if len(d) > 0 {
			v = append(v, unix.Iovec{Base: &d[0]})
			v[len(v)-1].SetLen(len(d))
		}
		if len(v) > 0 {
			msgs[i].hdr.Iov = &v[0]
		}
		msgs[i].hdr.SetIovlen(len(v))
	}
	var serr error
	bytes, skipped := 0, 0
	err := f.rc.Write(func(fd uintptr) bool {
		rest, b, k, again, err := sendUp(fd, msgs, len(f.header))
		msgs, bytes, skipped = rest, bytes+b, skipped+k
		if again {
			return false
		}
		serr = err
		return true
	})
	if err == nil {
		err = serr
	}
	// What did not go up: refused one by one (too big), no room, or the
	// socket gone with the rest of q.
	f.l.s.dropped(f.app, skipped+len(msgs))
	f.sent.Add(int64(bytes))
	if err == nil {
		f.touch()
	}
	return err
}

// replies receives the upstream's datagrams in batches and sends each
// batch to the client from the listen socket, until the flow ends.
func (f *udpFlow) replies() {
	defer f.l.s.wg.Done()
	defer f.close()
	// Read returns on an error only: the flow's socket closed, the
	// upstream refused (the program's socket is gone), or the listener
	// closed.
	_ = f.rc.Read(f.readFn)
}

// read is f.rc.Read's function: it receives and sends batches of replies
// until one comes back short, as udpListener.read does; true to end the
// flow. A refusal (the program's socket is gone) ends it once the replies
// the program sent before it are passed on. It must not close the flow
// itself: closing waits for this call.
func (f *udpFlow) read(fd uintptr) bool {
	l := f.l
	b := l.s.getBatch()
	defer l.s.putBatch(b)
	gone := false
	for {
		switch err := b.recvmmsg(fd, false); err {
		case nil:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return gone
		default:
			if gone || !udpSocketGone(err) {
				return true
			}
			// The error is taken: what came before it can still be read.
			gone = true
			continue
		}
		// Marked before the reply leaves: a client that got one may
		// count on its flow not being evicted.
		if b.n > 0 && !f.replied.Load() {
			f.replied.Store(true)
		}
		f.replyMsgs = b.prepareSend(0, b.n, nil, &f.name, f.namelen)
		f.replyBytes, f.replyDropped = 0, 0
		if err := l.rc.Write(f.writeFn); err != nil {
			return true // the listener is closed
		}
		l.s.dropped(f.app, f.replyDropped)
		f.received.Add(int64(f.replyBytes))
		f.touch()
		if b.n < udpBatchSize {
			return gone
		}
	}
}

// write sends f.replyMsgs from the listen socket, waiting while it has
// no room. A reply the kernel refuses (the client's address unreachable,
// too big for its family) is dropped, as a router would, and counted.
func (f *udpFlow) write(fd uintptr) bool {
	for {
		sent, err := sendmmsg(fd, f.replyMsgs)
		for _, m := range f.replyMsgs[:sent] {
			f.replyBytes += int(m.n)
		}
		f.replyMsgs = f.replyMsgs[sent:]
		switch err {
		case syscall.EAGAIN, syscall.EINTR:
			return false
		case nil:
			return true
		}
		if len(f.replyMsgs) == 0 {
			return true
		}
		f.replyMsgs = f.replyMsgs[1:] // skip the one refused
		f.replyDropped++
	}
}

// touch records a datagram either way, for the flow timeout.
func (f *udpFlow) touch() { f.last.Store(time.Now().UnixNano()) }

// expire ends the flow once it has been quiet for its timeout. It decides
// under l.mu, as flowFor does when it hands the flow a datagram.
func (f *udpFlow) expire() {
	f.l.mu.Lock()
	if quiet := time.Since(time.Unix(0, f.last.Load())); quiet < f.timeout {
		if !f.dead {
			f.timer.Reset(f.timeout - quiet)
		}
		f.l.mu.Unlock()
		return
	}
	f.dead = true // no datagram goes up it any more
	f.l.mu.Unlock()
	f.close()
}

// close ends the flow: out of its listener's table, queued datagrams
// dropped, and its socket and lease let go of (now, or by the goroutine
// still connecting it).
func (f *udpFlow) close() {
	f.closeOnce.Do(func() {
		l := f.l
		l.mu.Lock()
		f.dead = true
		if l.flows[f.client] == f {
			delete(l.flows, f.client)
		}
		q := f.queue
		f.queue = nil
		connected := f.conn != nil || f.lp != nil
		if f.timer != nil {
			f.timer.Stop()
		}
		l.mu.Unlock()
		if len(q) > 0 {
			l.s.udp.queues.give(f.app, q)
			l.s.dropped(f.app, len(q))
		}
		if connected {
			f.end()
		}
	})
}

// end closes the flow's socket and releases its lease, once; a loop's
// socket is closed by its loop, which releases the lease then.
func (f *udpFlow) end() {
	f.l.mu.Lock()
	conn, release, lp := f.conn, f.release, f.lp
	f.conn = nil
	if lp == nil {
		f.release = nil
	}
	f.l.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
	if lp != nil {
		lp.closeUDPFlow(f)
		return
	}
	if release != nil {
		f.finish(release)
	}
}

// finish releases the flow's lease and reports it.
func (f *udpFlow) finish(release func()) {
	release()
	if o := f.l.s.udpObserver(); o != nil {
		o.FlowClosed(f.app, f.sent.Load(), f.received.Load())
	}
	if log := f.l.s.logger(); log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("flow closed", slog.String("app", f.app), slog.String("client", f.client.String()),
			slog.Int64("sent", f.sent.Load()), slog.Int64("received", f.received.Load()))
	}
}
