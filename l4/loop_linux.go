package l4

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	loopBufSize = 32 << 10
	pipeSize    = 1 << 20
	// loopEvents is the epoll_wait batch.
	loopEvents = 256
	// loopYield is how often a busy loop gives the scheduler a turn; see
	// run. Below the runtime's 10 ms preemption threshold with room for a
	// wait that ends late.
	loopYield = 5 * time.Millisecond
	// evWake marks the eventfd's epoll registration.
	evWake = -1
)

// eventLoop owns the sockets of the connections handed to it, from the
// moment the first bytes may flow until both directions ended. Its state is
// touched only by its own goroutine, except the queue under mu.
//
// Why: a goroutine per direction on Go's netpoller costs a read that
// returns EAGAIN after every message (Go reads until EAGAIN before it
// parks) and a park/unpark through the scheduler per message. The loop
// reads until a short read (unless the peer's FIN was reported), writes
// at once, and blocks only in epoll_wait.
type eventLoop struct {
	s    *Server
	idx  int // among the Server's loops
	epfd int
	evfd int

	// conns counts the connections given to the loop and not yet
	// completed (see Server.eventLoopLocked).
	conns atomic.Int32

	mu      sync.Mutex
	queue   []*loopConn // new connections
	cuts    []*loopConn // connections Shutdown wants reset
	quiets  []*loopConn // connections the sweeper wants closed
	lqueue  []*listener // listeners to accept for (see loop_accept_linux.go)
	lremove []*listener // listeners to stop accepting for
	ureqs   []udpReq    // UDP sockets to register or let go of (udp_loop_linux.go)
	stopped bool
	dead    bool // the loop has ended: nothing queued is taken any more
	done    chan struct{}

	// Loop goroutine only.
	buf   []byte
	slots []*loopConn // epoll data holds the slot index and a generation
	free  []int32
	// The listeners accepted for, by id (epoll data: listenerEvent), and
	// those with connections left after a round's batch.
	lsts        map[int32]*listener
	acceptMore  []*listener
	acceptSpare []*listener
	udp         udpLoop
}

// loopConn is a connection while the loop moves its bytes. Side 0 is the
// client, side 1 the upstream; direction i reads side i and writes side 1-i.
type loopConn struct {
	pc       *proxyConn
	loop     *eventLoop // the loop it is handed to
	fd       [2]int
	slot     int32
	gen      int32
	active   bool
	readable [2]bool // edge-triggered: set by an event, cleared by a drained read
	hup      [2]bool // peer's FIN, a hang-up or an error was reported
	dir      [2]loopDir
	ndone    int
	reset    bool
	cutReq   bool // under the loop's mu: Shutdown asked for a reset
	quietReq bool // under the loop's mu: the sweeper asked for a close
}

// loopDir is one direction's state.
type loopDir struct {
	pend    []byte // bytes read but not yet written (after a partial write)
	eof     bool   // the source returned EOF; half-close once flushed
	done    bool
	pipe    [2]int // splice pipe, once the direction turned bulk; -1 before
	inPipe  int
	count   int64
	pendBuf []byte
}

// MaxEventLoops bounds EventLoops: a listener records the loops that let
// go of it in 32 bits.
const MaxEventLoops = 32

// eventLoopsLocked returns the event loops, starting them on first use;
// none when connections are to be copied by goroutines. s.mu must be held.
func (s *Server) eventLoopsLocked() []*eventLoop {
	if s.DataPath == DataPathGoroutines || s.loopFail {
		return nil
	}
	if s.loops == nil {
		for i := range min(max(s.EventLoops, 1), MaxEventLoops) {
			l, err := newEventLoop(s, i)
			if err != nil {
				if i == 0 {
					s.loopFail = true
					s.logger().Warn("starting the event loop failed, copying with goroutines", "err", err)
					return nil
				}
				s.logger().Warn("starting an event loop failed, going on with fewer", "loops", i, "err", err)
				break
			}
			s.loops = append(s.loops, l)
		}
	}
	return s.loops
}

// loopSlack is how many more connections than the least loaded loop the
// loop that accepted a connection may carry and still keep it.
const loopSlack = 2

// eventLoopLocked returns the loop to give a new connection to, and counts
// the connection on it; nil when connections are to be copied by
// goroutines. self, when not nil, is the loop that accepted it: it keeps
// the connection (no hand-over, no wake-up of another thread) unless it
// carries more than loopSlack connections above the least loaded loop.
// Otherwise the least loaded loop gets it, ties dealt in turn. Why: which
// loop the kernel wakes for a connection is chance, and long connections
// (keep-alive) stay where they were accepted, so the loops drift apart and
// the busier one caps the rate while the other idles (docs/BENCHMARKS.md,
// event loops). s.mu must be held.
func (s *Server) eventLoopLocked(self *eventLoop) *eventLoop {
	loops := s.eventLoopsLocked()
	if len(loops) == 0 {
		return nil
	}
	var least *eventLoop
	for i := range loops {
		l := loops[(s.nextLoop+1+i)%len(loops)]
		if least == nil || l.conns.Load() < least.conns.Load() {
			least = l
		}
	}
	l := self
	if self == nil || self.conns.Load() > least.conns.Load()+loopSlack {
		l = least
		s.nextLoop = l.idx
	}
	l.conns.Add(1)
	return l
}

// stopLoop ends the event loops, if any, once no connection uses them.
func (s *Server) stopLoop() {
	s.mu.Lock()
	loops := s.loops
	s.loops = nil
	s.mu.Unlock()
	for _, l := range loops {
		l.stop()
	}
}

func newEventLoop(s *Server, idx int) (*eventLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("creating epoll: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("creating eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: evWake}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(evfd)
		return nil, fmt.Errorf("registering eventfd: %w", err)
	}
	l := &eventLoop{s: s, idx: idx, epfd: epfd, evfd: evfd, done: make(chan struct{}), buf: make([]byte, loopBufSize)}
	go l.run()
	return l, nil
}

func (l *eventLoop) wake() {
	one := uint64(1)
	syscall.RawSyscall(syscall.SYS_WRITE, uintptr(l.evfd), uintptr(unsafe.Pointer(&one)), 8)
}

// add hands c to the loop. The caller has counted it in s.wg; the loop
// calls finish and s.wg.Done once both directions ended.
func (l *eventLoop) add(c *loopConn) {
	l.mu.Lock()
	l.queue = append(l.queue, c)
	first := len(l.queue) == 1
	l.mu.Unlock()
	if first {
		l.wake()
	}
}

// cut asks the loop to reset c (Shutdown's deadline passed).
func (l *eventLoop) cut(c *loopConn) {
	l.mu.Lock()
	c.cutReq = true // in case c is not queued yet
	l.cuts = append(l.cuts, c)
	l.mu.Unlock()
	l.wake()
}

// closeQuiet asks the loop to close c, quiet for its client_idle_timeout
// (quiet.go): a plain close of both sockets, no reset.
func (l *eventLoop) closeQuiet(c *loopConn) {
	l.mu.Lock()
	c.quietReq = true // in case c is not queued yet
	l.quiets = append(l.quiets, c)
	l.mu.Unlock()
	l.wake()
}

// stop ends the loop once every connection handed to it has finished, and
// waits for it.
func (l *eventLoop) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	l.wake()
	<-l.done
}

// run is the loop's goroutine. It is not locked to its thread, and it
// yields every loopYield while busy. Why: a goroutine that never enters
// the scheduler looks stuck to the runtime's monitor (sysmon), which then
// preempts it, or takes its P away while it sits in epoll_wait, and keeps
// polling at its fastest instead of backing off; locked to its thread,
// every preemption would also hand the P to another thread and back.
// Unlocked and yielding roughly halves the context switches per new
// connection (docs/BENCHMARKS.md, event loops).
func (l *eventLoop) run() {
	defer close(l.done)
	events := make([]unix.EpollEvent, loopEvents)
	yielded := time.Now()
	for {
		if now := time.Now(); now.Sub(yielded) >= loopYield {
			runtime.Gosched()
			yielded = now
		}
		timeout := -1
		if len(l.acceptMore) > 0 || len(l.udp.more) > 0 {
			timeout = 0 // a listener still has connections or datagrams waiting
		}
		n, err := unix.EpollWait(l.epfd, events, timeout)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			l.s.logger().Error("epoll_wait failed; cutting the loop's connections", "err", err)
			l.shutdownLoop()
			return
		}
		for i := range events[:n] {
			ev := &events[i]
			if ev.Fd == evWake {
				if l.takeQueue() {
					l.shutdownLoop()
					return
				}
				continue
			}
			if ev.Pad < 0 {
				l.udpEvent(ev.Fd, ^ev.Pad, ev.Events&unix.EPOLLERR != 0)
				continue
			}
			if ev.Fd < evWake {
				if lst := l.lsts[evWake-1-ev.Fd]; lst != nil {
					l.acceptFrom(lst)
				}
				continue
			}
			if int(ev.Fd) >= len(l.slots) {
				continue
			}
			c := l.slots[ev.Fd]
			if c == nil || c.gen != ev.Pad>>1 {
				continue // an event of a connection that has ended
			}
			side := int(ev.Pad & 1)
			if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				c.readable[side] = true
			}
			if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				c.hup[side] = true
			}
			l.pump(c, side)
			if c.active {
				l.pump(c, 1-side)
			}
		}
		if len(l.acceptMore) > 0 {
			l.acceptAgain()
		}
		if len(l.udp.more) > 0 {
			l.udpAgain()
		}
	}
}

// takeQueue registers the queued connections and resets the cut ones;
// true if the loop must stop.
func (l *eventLoop) takeQueue() bool {
	var cnt uint64
	syscall.RawSyscall(syscall.SYS_READ, uintptr(l.evfd), uintptr(unsafe.Pointer(&cnt)), 8)
	l.mu.Lock()
	q, cuts, quiets, stopped := l.queue, l.cuts, l.quiets, l.stopped
	ladd, lrem, ureqs := l.lqueue, l.lremove, l.ureqs
	l.queue, l.cuts, l.quiets, l.lqueue, l.lremove, l.ureqs = nil, nil, nil, nil, nil, nil
	for _, c := range q {
		if c.cutReq {
			cuts = append(cuts, c) // cut before it was handed over
		}
		if c.quietReq {
			quiets = append(quiets, c)
		}
	}
	l.mu.Unlock()
	if len(ladd) > 0 || len(lrem) > 0 {
		l.takeListeners(ladd, lrem)
	}
	l.takeUDP(ureqs)
	for _, c := range q {
		l.register(c)
	}
	for _, c := range cuts {
		if c.active {
			l.abort(c)
		}
	}
	for _, c := range quiets {
		if c.active {
			l.complete(c)
		}
	}
	return stopped
}

func (l *eventLoop) register(c *loopConn) {
	if n := len(l.free); n > 0 {
		c.slot = l.free[n-1]
		l.free = l.free[:n-1]
	} else {
		c.slot = int32(len(l.slots))
		l.slots = append(l.slots, nil)
	}
	c.gen++
	if old := l.slots[c.slot]; old != nil {
		c.gen = old.gen + 1
	}
	l.slots[c.slot] = c
	c.active = true
	for i := range c.dir {
		c.dir[i].pipe = [2]int{-1, -1}
	}
	// Registering reports the sockets' current state at once (bytes the
	// client sent while its app woke, say), so no read is tried blindly.
	for side := range 2 {
		ev := unix.EpollEvent{
			Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET,
			Fd:     c.slot,
			Pad:    c.gen<<1 | int32(side),
		}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, c.fd[side], &ev); err != nil {
			l.s.logger().Warn("registering a connection with epoll failed, closing it",
				"app", c.pc.app, "err", err)
			l.abort(c)
			return
		}
	}
}

func rawRead(fd int, p []byte) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}

func rawWrite(fd int, p []byte) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}

func rawSplice(in, out, n int) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}

// pump moves direction di's bytes as far as the sockets allow without
// blocking.
func (l *eventLoop) pump(c *loopConn, di int) {
	d := &c.dir[di]
	if d.done {
		return
	}
	src, dst := c.fd[di], c.fd[1-di]
	for {
		if len(d.pend) > 0 {
			n, e := rawWrite(dst, d.pend)
			d.pend = d.pend[n:]
			if e == syscall.EAGAIN || (e == 0 && len(d.pend) > 0) {
				return // wait for EPOLLOUT on dst
			}
			if e != 0 {
				l.abort(c)
				return
			}
		}
		if d.inPipe > 0 {
			n, e := rawSplice(d.pipe[0], dst, d.inPipe)
			d.inPipe -= n
			if e == syscall.EAGAIN {
				return
			}
			if e != 0 {
				l.abort(c)
				return
			}
			if d.inPipe > 0 {
				continue
			}
		}
		if d.eof {
			l.endDir(c, di)
			return
		}
		if !c.readable[di] {
			return
		}
		if d.pipe[0] >= 0 {
			n, e := rawSplice(src, d.pipe[1], pipeSize)
			switch {
			case e == syscall.EAGAIN:
				c.readable[di] = false
				return
			case e != 0:
				l.abort(c)
				return
			case n == 0:
				d.eof = true
			default:
				d.inPipe += n
				d.count += int64(n)
				c.counted(n)
			}
			continue
		}
		n, e := rawRead(src, l.buf)
		switch {
		case e == syscall.EAGAIN:
			c.readable[di] = false
			return
		case e != 0:
			l.abort(c)
			return
		case n == 0:
			d.eof = true
			continue
		}
		d.count += int64(n)
		c.counted(n)
		w, e := rawWrite(dst, l.buf[:n])
		if e != 0 && e != syscall.EAGAIN {
			l.abort(c)
			return
		}
		if w < n {
			d.pendBuf = append(d.pendBuf[:0], l.buf[w:n]...)
			d.pend = d.pendBuf
		}
		if n == len(l.buf) {
			if !l.s.noSplice {
				l.startSplice(d)
			}
		} else if !c.hup[di] {
			// A short read drained the socket: the next bytes bring a new
			// edge. Only a reported FIN makes it read on, to see the EOF
			// that came with the last bytes.
			c.readable[di] = false
		}
		if len(d.pend) > 0 {
			return
		}
	}
}

// counted adds n bytes read to the connection's count when it is watched
// (quiet.go).
func (c *loopConn) counted(n int) {
	if c.pc.counted {
		c.pc.moved.Add(int64(n))
	}
}

// startSplice switches d to splice(2) through a pipe of its own: a read
// filled the whole buffer, so this direction carries bulk. On failure d
// stays on read/write.
func (l *eventLoop) startSplice(d *loopDir) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		return
	}
	// A larger pipe moves a MB in one splice pair; the default (64 KiB)
	// stays if the limit (pipe-max-size) refuses it.
	syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(p[1]), unix.F_SETPIPE_SZ, pipeSize)
	d.pipe = p
	d.pendBuf = nil
}

// endDir half-closes direction di's destination once its source ended and
// everything is written. When the other direction has ended already the
// shutdown is skipped: the close that follows sends the FIN.
func (l *eventLoop) endDir(c *loopConn, di int) {
	d := &c.dir[di]
	d.done = true
	c.ndone++
	if c.ndone == 2 {
		l.complete(c)
		return
	}
	syscall.RawSyscall(syscall.SYS_SHUTDOWN, uintptr(c.fd[1-di]), syscall.SHUT_WR, 0)
}

// abort resets both sockets (SO_LINGER 0) and ends c: a reset or write
// error on one side is passed on to the other.
func (l *eventLoop) abort(c *loopConn) {
	if !c.active {
		return
	}
	c.reset = true
	c.pc.aborted.Store(true)
	lin := syscall.Linger{Onoff: 1, Linger: 0}
	for _, fd := range c.fd {
		syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &lin)
	}
	l.complete(c)
}

// complete frees c's slot and hands the connection back: the sockets are
// closed through Go (so its netpoller forgets them), then release and the
// Observer run, as on the goroutine path.
func (l *eventLoop) complete(c *loopConn) {
	c.active = false
	l.slots[c.slot] = nil
	l.free = append(l.free, c.slot)
	for i := range c.dir {
		d := &c.dir[i]
		if d.pipe[0] >= 0 {
			syscall.Close(d.pipe[0])
			syscall.Close(d.pipe[1])
			d.pipe = [2]int{-1, -1}
		}
	}
	syscall.Close(c.fd[0])
	syscall.Close(c.fd[1])
	pc := c.pc
	pc.sent += c.dir[0].count
	pc.received += c.dir[1].count
	pc.finish()
	l.conns.Add(-1)
	l.s.wg.Done()
}

// shutdownLoop resets whatever is still registered (nothing, when Shutdown
// waited for its connections) and releases the loop's descriptors.
func (l *eventLoop) shutdownLoop() {
	for _, c := range l.slots {
		if c != nil && c.active {
			l.abort(c)
		}
	}
	l.mu.Lock()
	l.dead = true
	q := l.queue
	lsts := append(l.lqueue, l.lremove...)
	l.queue, l.cuts, l.quiets, l.lqueue, l.lremove = nil, nil, nil, nil, nil
	// Listeners still here (only when epoll_wait failed: a Shutdown
	// removes every listener before it stops the loop) stop accepting;
	// under mu, as removeListener lets go itself from now on.
	for _, lst := range l.lsts {
		lsts = append(lsts, lst)
	}
	l.takeListeners(nil, lsts)
	l.shutdownUDP(l.ureqs)
	l.ureqs = nil
	l.mu.Unlock()
	for _, c := range q {
		c.active = true
		c.slot = int32(len(l.slots))
		l.slots = append(l.slots, c)
		c.dir[0].pipe, c.dir[1].pipe = [2]int{-1, -1}, [2]int{-1, -1}
		l.abort(c)
	}
	syscall.Close(l.epfd)
	syscall.Close(l.evfd)
}
