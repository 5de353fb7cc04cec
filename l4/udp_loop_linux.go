package l4

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// UDP on the event loops: a UDP listener handed to a loop has its socket
// registered with the loop's epoll, and so has the upstream socket of each
// of its flows once connected. The loop receives a batch with recvmmsg,
// forwards each client's run with one sendmmsg, and sends the replies
// from the listen socket, until a batch comes back short: no goroutine,
// no netpoller and no scheduler on the warm path, as an nginx worker.
// One loop carries a listener and all its flows, so that a flow's socket
// is only ever used and closed by that loop's goroutine; a waking flow's
// goroutine sends its queue through a socket of its own (a dup) until the
// flow is ready.
//
// Epoll data of a UDP socket: Fd is its slot in the loop's udpLoop, Pad
// the bitwise complement of the slot's generation, negative, which tells
// it from connections (Pad > 0) and from the eventfd and TCP listeners
// (Pad 0).

// udpRounds bounds the batches received per readiness event, so that a
// flood on one socket cannot starve the others of the loop; a socket with
// more waiting is read again after the round's events.
const udpRounds = 8

// udpReq asks the loop to register (add) or let go of a UDP listener or
// flow.
type udpReq struct {
	lst *udpListener
	f   *udpFlow
	add bool
}

// udpSlot is a UDP socket registered with the loop.
type udpSlot struct {
	lst *udpListener
	f   *udpFlow
	gen int32
}

type udpSlotRef struct{ idx, gen int32 }

// udpLoop is a loop's UDP state, its goroutine's own.
type udpLoop struct {
	slots       []udpSlot
	free        []int32
	gen         int32
	batch       *udpBatch
	more, spare []udpSlotRef
}

func udpEventPad(gen int32) int32 { return ^gen }

// udpQueue hands r to the loop; false if the loop has ended (the caller
// then lets go itself, under l.mu, see udpDead).
func (l *eventLoop) udpQueue(r udpReq) bool {
	l.mu.Lock()
	if l.dead {
		l.udpDead(r)
		l.mu.Unlock()
		return false
	}
	l.ureqs = append(l.ureqs, r)
	l.mu.Unlock()
	l.wake()
	return true
}

// udpDead lets go of what r names once the loop has ended: l.mu is held,
// which orders it with shutdownLoop.
func (l *eventLoop) udpDead(r udpReq) {
	switch {
	case r.f != nil:
		l.finishUDPFlow(r.f)
	case !r.add:
		l.s.wg.Done() // the listener's count, taken when it was handed over
	default:
		r.lst.fdMu.Lock()
		r.lst.toGoroutineLocked()
		r.lst.fdMu.Unlock()
	}
}

// addUDPListener asks the loop to receive for lst. The caller has counted
// lst in s.wg; its removal counts it out.
func (l *eventLoop) addUDPListener(lst *udpListener) { l.udpQueue(udpReq{lst: lst, add: true}) }

// removeUDPListener asks the loop to forget lst, whose socket is closed.
func (l *eventLoop) removeUDPListener(lst *udpListener) { l.udpQueue(udpReq{lst: lst}) }

// addUDPFlow asks the loop to receive f's replies; f.fd is the loop's.
func (l *eventLoop) addUDPFlow(f *udpFlow) { l.udpQueue(udpReq{f: f, add: true}) }

// closeUDPFlow asks the loop to close f's socket and finish it.
func (l *eventLoop) closeUDPFlow(f *udpFlow) { l.udpQueue(udpReq{f: f}) }

// takeUDP carries out the queued requests, in order. Loop goroutine only.
func (l *eventLoop) takeUDP(reqs []udpReq) {
	for _, r := range reqs {
		switch {
		case r.f != nil && r.add:
			l.registerUDPFlow(r.f)
		case r.f != nil:
			l.finishUDPFlow(r.f)
		case r.add:
			l.registerUDPListener(r.lst)
		default:
			if r.lst.slot >= 0 {
				l.freeUDPSlot(r.lst.slot)
				r.lst.slot = -1
			}
			l.s.wg.Done()
		}
	}
}

func (l *eventLoop) udpSlot(lst *udpListener, f *udpFlow) (idx, gen int32) {
	u := &l.udp
	if n := len(u.free); n > 0 {
		idx = u.free[n-1]
		u.free = u.free[:n-1]
	} else {
		idx = int32(len(u.slots))
		u.slots = append(u.slots, udpSlot{})
	}
	u.gen = (u.gen + 1) & 0x3fffffff
	u.slots[idx] = udpSlot{lst: lst, f: f, gen: u.gen}
	return idx, u.gen
}

func (l *eventLoop) freeUDPSlot(idx int32) {
	l.udp.slots[idx] = udpSlot{}
	l.udp.free = append(l.udp.free, idx)
}

// registerUDPListener adds lst's socket to the loop's epoll, unless it
// was closed meanwhile. Registering reports datagrams already queued.
func (l *eventLoop) registerUDPListener(lst *udpListener) {
	lst.fdMu.Lock()
	defer lst.fdMu.Unlock()
	if lst.fd < 0 {
		return
	}
	idx, gen := l.udpSlot(lst, nil)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: idx, Pad: udpEventPad(gen)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, lst.fd, &ev); err != nil {
		l.freeUDPSlot(idx)
		l.s.logger().Warn("registering a UDP listener with epoll failed; receiving in a goroutine",
			"listen", lst.addr, "err", err)
		lst.toGoroutineLocked()
		return
	}
	lst.slot = idx
}

// toGoroutineLocked takes lst back from a loop that cannot serve it (the
// loop ended, or its epoll refused the socket): it receives in a goroutine
// of its own, as when there are no loops, which counts it out of s.wg in
// place of its removal from the loop. Nothing has received on it yet. A
// listener closed meanwhile is left to its removal. lst.fdMu must be held.
func (lst *udpListener) toGoroutineLocked() {
	if lst.fd < 0 {
		return
	}
	file := os.NewFile(uintptr(lst.fd), lst.addr)
	pc, err := net.FilePacketConn(file)
	file.Close()
	lst.fd = -1
	var rc syscall.RawConn
	if err == nil {
		rc, err = pc.(*net.UDPConn).SyscallConn()
		if err != nil {
			pc.Close()
		}
	}
	if err != nil {
		// Left to the loop's removal, which counts it out.
		lst.s.logger().Error("receiving on a UDP listener in a goroutine failed; it receives nothing",
			"listen", lst.addr, "err", err)
		return
	}
	lst.conn, lst.rc, lst.loop = pc.(*net.UDPConn), rc, nil
	go lst.recvLoop()
}

// registerUDPFlow adds f's socket to the loop's epoll. Loop goroutine only.
func (l *eventLoop) registerUDPFlow(f *udpFlow) {
	if f.fd < 0 {
		return // finished already
	}
	idx, gen := l.udpSlot(nil, f)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: idx, Pad: udpEventPad(gen)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, f.fd, &ev); err != nil {
		l.freeUDPSlot(idx)
		l.s.logger().Warn("registering a UDP flow with epoll failed, closing it", "app", f.app, "err", err)
		l.finishUDPFlow(f)
		f.close()
		return
	}
	f.slot = idx
}

// finishUDPFlow closes f's socket and releases its lease, once. On the
// loop goroutine, or under l.mu once the loop has ended.
func (l *eventLoop) finishUDPFlow(f *udpFlow) {
	if f.fd < 0 {
		return
	}
	if f.slot >= 0 {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, f.fd, nil)
		l.freeUDPSlot(f.slot)
		f.slot = -1
	}
	syscall.Close(f.fd)
	f.fd = -1
	f.l.mu.Lock()
	release := f.release
	f.release = nil
	f.l.mu.Unlock()
	if release != nil {
		f.finish(release)
	}
	l.s.wg.Done()
}

// udpEvent serves a readiness event of UDP slot idx; errEv if it
// reported an error pending on the socket.
func (l *eventLoop) udpEvent(idx, gen int32, errEv bool) {
	if int(idx) >= len(l.udp.slots) {
		return
	}
	sl := l.udp.slots[idx]
	if sl.gen != gen {
		return // an event of a socket let go of in this round
	}
	var more bool
	switch {
	case sl.lst != nil:
		more = l.udpReceive(sl.lst)
	case sl.f != nil:
		more = l.udpReplies(sl.f, errEv)
	}
	if more {
		l.udp.more = append(l.udp.more, udpSlotRef{idx, gen})
	}
}

// udpAgain reads again the sockets a round left with datagrams waiting.
func (l *eventLoop) udpAgain() {
	more := l.udp.more
	l.udp.more = l.udp.spare[:0]
	for _, r := range more {
		l.udpEvent(r.idx, r.gen, false)
	}
	l.udp.spare = more[:0]
}

func (l *eventLoop) udpBatch() *udpBatch {
	if l.udp.batch == nil {
		l.udp.batch = newUDPBatch()
	}
	return l.udp.batch
}

// udpReceive receives and dispatches lst's datagrams until a batch comes
// back short; true if it stopped at udpRounds with more waiting.
func (l *eventLoop) udpReceive(lst *udpListener) bool {
	b := l.udpBatch()
	for range udpRounds {
		lst.fdMu.Lock()
		if lst.fd < 0 {
			lst.fdMu.Unlock()
			return false
		}
		err := b.recvmmsg(uintptr(lst.fd), true)
		lst.fdMu.Unlock()
		switch err {
		case nil:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			lst.logError("receiving datagrams failed", err)
			return false
		}
		lst.dispatch(b)
		if b.n < udpBatchSize {
			return false
		}
	}
	return true
}

// udpReplies receives f's replies and sends them to its client from the
// listen socket until a batch comes back short; true if it stopped at
// udpRounds with more waiting. A refusal (the program's socket is gone)
// ends the flow once the replies the program sent before it are passed
// on. errEv: the event reported an error, which a short batch may have
// left pending (recvmmsg keeps an error that follows some datagrams for
// later, and the edge it raised is spent): ask the socket.
func (l *eventLoop) udpReplies(f *udpFlow, errEv bool) bool {
	b := l.udpBatch()
	lst := f.l
	gone := false
	for range udpRounds {
		if f.fd < 0 {
			return false
		}
		switch err := b.recvmmsg(uintptr(f.fd), false); err {
		case nil:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			l.udpRepliesDone(f, gone, errEv)
			return false
		default:
			if gone || !udpSocketGone(err) {
				f.close()
				return false
			}
			// The error is taken: what came before it can still be read.
			gone = true
			continue
		}
		if b.n > 0 && !f.replied.Load() {
			f.replied.Store(true) // before the reply leaves, as in udpFlow.read
		}
		msgs := b.prepareSend(0, b.n, nil, &f.name, f.namelen)
		lst.fdMu.Lock()
		fd := lst.fd
		n, dropped := 0, 0
		if fd >= 0 {
			n, dropped = sendReplies(fd, msgs)
		}
		lst.fdMu.Unlock()
		if fd < 0 {
			return false // the listener is closed, and its flows with it
		}
		lst.s.dropped(f.app, dropped)
		f.received.Add(int64(n))
		f.touch()
		if b.n < udpBatchSize {
			l.udpRepliesDone(f, gone, errEv)
			return false
		}
	}
	if gone {
		f.close()
		return false
	}
	return true
}

// udpRepliesDone ends f after its replies were read: if its upstream
// refused, or if the event reported an error that is still pending.
func (l *eventLoop) udpRepliesDone(f *udpFlow, gone, errEv bool) {
	if !gone && errEv && f.fd >= 0 {
		if e, err := unix.GetsockoptInt(f.fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && e != 0 {
			gone = true
		}
	}
	if gone {
		f.close()
	}
}

// sendReplies sends msgs from the listen socket fd without waiting. A
// reply the kernel refuses (the client's address unreachable, too big for
// its family) or has no room for is dropped, as a router would, and
// counted in dropped; n is the bytes sent.
func sendReplies(fd int, msgs []mmsghdr) (n, dropped int) {
	for len(msgs) > 0 {
		sent, err := sendmmsg(uintptr(fd), msgs)
		for _, m := range msgs[:sent] {
			n += int(m.n)
		}
		msgs = msgs[sent:]
		switch err {
		case nil:
			return n, dropped
		case syscall.EINTR:
			continue
		case syscall.EAGAIN, syscall.ENOBUFS:
			return n, dropped + len(msgs)
		}
		if len(msgs) > 0 {
			msgs = msgs[1:] // skip the one refused
			dropped++
		}
	}
	return n, dropped
}

// forwardRaw sends datagrams [i, j) of b up f's socket from the loop. One
// the socket has no room for, or refuses on its own, is dropped and
// counted; a refusal of the socket ends the flow (the program's socket is
// gone), its unsent datagrams counted.
func (l *udpListener) forwardRaw(f *udpFlow, b *udpBatch, i, j int) {
	msgs := b.prepareSend(i, j, f.header, nil, 0)
	if f.fd < 0 {
		l.s.dropped(f.app, len(msgs))
		return
	}
	rest, n, skipped, _, err := sendUp(uintptr(f.fd), msgs, len(f.header))
	l.s.dropped(f.app, skipped+len(rest))
	f.sent.Add(int64(n))
	if err != nil {
		f.close()
		return
	}
	f.touch()
}

// connectRaw makes f's socket to upstream for the loop, which owns it
// from here on, with release.
func (f *udpFlow) connectRaw(upstream netip.AddrPort, release func()) error {
	family, sa := unix.AF_INET, unix.Sockaddr(nil)
	if upstream.Addr().Is4() || upstream.Addr().Is4In6() {
		sa = &unix.SockaddrInet4{Port: int(upstream.Port()), Addr: upstream.Addr().Unmap().As4()}
	} else {
		family = unix.AF_INET6
		sa6 := &unix.SockaddrInet6{Port: int(upstream.Port()), Addr: upstream.Addr().As16()}
		if zone := upstream.Addr().Zone(); zone != "" {
			id, err := zoneID(zone)
			if err != nil {
				release()
				return err
			}
			sa6.ZoneId = id
		}
		sa = sa6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		release()
		return err
	}
	if err := unix.Connect(fd, sa); err != nil {
		syscall.Close(fd)
		release()
		return err
	}
	l := f.l
	l.mu.Lock()
	f.fd, f.lp, f.release = fd, l.loop, release
	l.s.wg.Add(1) // counted out by finishUDPFlow
	l.mu.Unlock()
	f.touch()
	return nil
}

// zoneID is the scope id an IPv6 zone names: an interface index as a
// number, else an interface name, as net.DialUDP reads it.
func zoneID(zone string) (uint32, error) {
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n), nil
	}
	ifi, err := net.InterfaceByName(zone)
	if err != nil {
		return 0, err
	}
	return uint32(ifi.Index), nil
}

// handTo gives the replies of f, connected through f.conn, to loop lp: on
// a socket of the loop's own (a dup of f.conn's), so that the waking
// goroutine may go on sending its queue through f.conn meanwhile.
func (f *udpFlow) handTo(lp *eventLoop) {
	dup := -1
	var derr error
	if err := f.rc.Control(func(fd uintptr) {
		dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || derr != nil {
		f.close()
		return
	}
	l := f.l
	l.mu.Lock()
	if f.dead || l.closed {
		l.mu.Unlock()
		syscall.Close(dup)
		f.close()
		return
	}
	f.fd, f.lp = dup, lp
	l.s.wg.Add(1) // counted out by finishUDPFlow
	l.mu.Unlock()
	lp.addUDPFlow(f)
}

// shutdownUDP lets go of every UDP socket of an ending loop: flows are
// finished, listeners forgotten (each removal still counts its listener
// out of s.wg). l.mu is held.
func (l *eventLoop) shutdownUDP(reqs []udpReq) {
	for _, sl := range l.udp.slots {
		if sl.f != nil {
			l.finishUDPFlow(sl.f)
		}
		if sl.lst != nil {
			sl.lst.slot = -1
			sl.lst.fdMu.Lock()
			if sl.lst.fd >= 0 {
				unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, sl.lst.fd, nil)
			}
			sl.lst.fdMu.Unlock()
		}
	}
	for _, r := range reqs {
		l.udpDead(r)
	}
}
