package l4

import (
	"math/bits"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The event loop accepts too: each listening socket of a Server whose loop
// carries connections is registered with the loop's epoll, and the loop
// accepts, leases a ready app (ReadyWaker), connects and registers both
// sockets itself. A warm connection then costs no goroutine, no hand-over
// through the eventfd and no netpoller wake-up: the thread that moves the
// bytes does everything, as HAProxy's threads do. Connections that must
// wait (a stopped app, a name to peek, a slow connect) go to a goroutine
// of their own.

// acceptBatch bounds the connections accepted per readiness event, so that
// a flood of connects cannot starve the bytes of open connections; a
// listener with more waiting is accepted from again after the events of
// the same round.
const acceptBatch = 64

// listenerEvent is the epoll data of listener lid: below evWake, so that
// it is told from connection slots (>= 0) and the eventfd (evWake).
func listenerEvent(lid int32) int32 { return evWake - 1 - lid }

// addListener asks the loop to accept for l (again, after a pause). The
// caller has counted l in s.wg; the loop calls s.wg.Done once l is removed.
func (l *eventLoop) addListener(lst *listener) {
	l.mu.Lock()
	if l.dead {
		// Only after epoll_wait failed: the loop let go of every
		// listener, and lst is let go by its removal.
		l.mu.Unlock()
		return
	}
	l.lqueue = append(l.lqueue, lst)
	l.mu.Unlock()
	l.wake()
}

// removeListener asks the loop to stop accepting for l and close its
// descriptor; l's socket is already shut down (see listener.closeLocked).
func (l *eventLoop) removeListener(lst *listener) {
	l.mu.Lock()
	if l.dead {
		l.letGo(lst) // no loop goroutine any more to do it
		l.mu.Unlock()
		return
	}
	l.lremove = append(l.lremove, lst)
	l.mu.Unlock()
	l.wake()
}

// takeListeners registers and removes the listeners queued by addListener
// and removeListener, removals first: a listener removed while it was
// paused is never registered again. Loop goroutine only.
func (l *eventLoop) takeListeners(add, remove []*listener) {
	for _, lst := range remove {
		l.letGo(lst)
	}
	for _, lst := range add {
		if lst.gone.Load()&l.bit() != 0 {
			continue
		}
		if l.lsts == nil {
			l.lsts = make(map[int32]*listener)
		}
		l.lsts[lst.lid] = lst
		// Registering reports connections already queued at once. With
		// several loops, EPOLLEXCLUSIVE wakes one of those waiting, not
		// all: a busy loop keeps the event queued for itself and the
		// kernel wakes the next.
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET | unix.EPOLLEXCLUSIVE, Fd: listenerEvent(lst.lid)}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, lst.fd, &ev); err != nil {
			delete(l.lsts, lst.lid)
			l.pause(lst, err)
		}
	}
}

// bit is the loop's bit in listener.gone.
func (l *eventLoop) bit() uint32 { return 1 << l.idx }

// letGo stops accepting for lst on this loop, once; the last loop to let
// go closes its descriptor and counts it out of s.wg. Loop goroutine only.
func (l *eventLoop) letGo(lst *listener) {
	before := lst.gone.Or(l.bit())
	if before&l.bit() != 0 {
		return
	}
	if _, ok := l.lsts[lst.lid]; ok {
		delete(l.lsts, lst.lid)
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, lst.fd, nil)
	}
	if bits.OnesCount32(before|l.bit()) == len(lst.loops) {
		syscall.Close(lst.fd)
		l.s.wg.Done()
	}
}

// acceptFrom accepts up to acceptBatch connections of lst and serves each.
// Loop goroutine only.
func (l *eventLoop) acceptFrom(lst *listener) {
	for range acceptBatch {
		nfd, sa, err := syscall.Accept4(lst.fd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		switch err {
		case nil:
		case syscall.EAGAIN:
			return
		case syscall.EINTR, syscall.ECONNABORTED:
			continue
		default:
			select {
			case <-lst.done:
				return // shut down (EINVAL): its removal is queued
			default:
			}
			delete(l.lsts, lst.lid)
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, lst.fd, nil)
			l.pause(lst, err)
			return
		}
		lst.accepted()
		lst.serve(l.s.rawConn(nfd, sa), l)
	}
	l.acceptMore = append(l.acceptMore, lst)
}

// pause stops accepting for lst, after an error such as EMFILE, for its
// backoff; resumeListener then hands it back. lst is not registered.
func (l *eventLoop) pause(lst *listener, err error) {
	delay := lst.backoff(err)
	l.s.wg.Add(1)
	go l.resumeListener(lst, delay)
}

// resumeListener gives lst back to the loop after delay, unless it is
// closed meanwhile (its removal, queued by close, then wins).
func (l *eventLoop) resumeListener(lst *listener, delay time.Duration) {
	defer l.s.wg.Done()
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		l.addListener(lst)
	case <-lst.done:
	}
}

// acceptAgain accepts from the listeners a round left with connections
// waiting. Loop goroutine only.
func (l *eventLoop) acceptAgain() {
	more := l.acceptMore
	l.acceptMore = l.acceptSpare[:0]
	for _, lst := range more {
		if l.lsts[lst.lid] == lst {
			l.acceptFrom(lst)
		}
	}
	l.acceptSpare = more[:0]
}
