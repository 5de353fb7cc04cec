package l4

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP batches: one recvmmsg(2) or sendmmsg(2) moves up to udpBatchSize
// datagrams, each in a slot big enough for any UDP payload, so nothing is
// ever cut. A batch is built once (its headers point at its own slots and
// address buffers) and reused from the Server's pool: the datagrams that
// cross it allocate nothing.
const (
	udpBatchSize = 16
	udpSlotSize  = 1 << 16
)

// mmsghdr is struct mmsghdr: Go pads it as C does on every architecture.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// udpBatch is a set of datagram slots with their headers.
type udpBatch struct {
	msgs  [udpBatchSize]mmsghdr
	iovs  [udpBatchSize]unix.Iovec
	hiovs [udpBatchSize][2]unix.Iovec         // a header, then the datagram
	names [udpBatchSize]unix.RawSockaddrInet6 // room for either family
	buf   []byte                              // udpBatchSize slots of udpSlotSize
	n     int                                 // datagrams received
}

func newUDPBatch() *udpBatch {
	b := &udpBatch{buf: make([]byte, udpBatchSize*udpSlotSize)}
	for i := range b.msgs {
		b.iovs[i].Base = &b.buf[i*udpSlotSize]
		b.msgs[i].hdr.Iov = &b.iovs[i]
		b.msgs[i].hdr.SetIovlen(1)
	}
	return b
}

// resetForRecv makes every slot whole again, with its address buffer.
func (b *udpBatch) resetForRecv(withNames bool) {
	for i := range b.msgs {
		b.iovs[i].SetLen(udpSlotSize)
		h := &b.msgs[i].hdr
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
		if withNames {
			h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
			h.Namelen = unix.SizeofSockaddrInet6
		} else {
			h.Name, h.Namelen = nil, 0
		}
		h.Flags = 0
		b.msgs[i].n = 0
	}
	b.n = 0
}

// data is datagram i of the batch.
func (b *udpBatch) data(i int) []byte {
	return b.buf[i*udpSlotSize : i*udpSlotSize+int(b.msgs[i].n)]
}

// from is the address datagram i came from.
func (b *udpBatch) from(i int) netip.AddrPort {
	return rawAddrPort(&b.names[i])
}

// prepareSend turns datagrams [i, j) into a send: each slot cut to its
// datagram, after header if there is one, sent to name (nil on a connected
// socket).
func (b *udpBatch) prepareSend(i, j int, header []byte, name *unix.RawSockaddrInet6, namelen uint32) []mmsghdr {
	for k := i; k < j; k++ {
		b.iovs[k].SetLen(int(b.msgs[k].n))
		h := &b.msgs[k].hdr
		if len(header) > 0 {
			b.hiovs[k] = [2]unix.Iovec{{Base: &header[0]}, b.iovs[k]}
			b.hiovs[k][0].SetLen(len(header))
			h.Iov = &b.hiovs[k][0]
			h.SetIovlen(2)
		}
		h.Name, h.Namelen = (*byte)(unsafe.Pointer(name)), namelen
		if name == nil {
			h.Namelen = 0
		}
	}
	return b.msgs[i:j]
}

// recvmmsg reads what fd has queued into b, without waiting.
func (b *udpBatch) recvmmsg(fd uintptr, withNames bool) error {
	b.resetForRecv(withNames)
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.msgs[0])), udpBatchSize, unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return errno
	}
	b.n = int(n)
	return nil
}

// sendmmsg sends msgs on fd without waiting; sent is how many went out
// before an error, if any.
func sendmmsg(fd uintptr, msgs []mmsghdr) (sent int, err error) {
	for sent < len(msgs) {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&msgs[sent])), uintptr(len(msgs)-sent), unix.MSG_DONTWAIT, 0, 0)
		if errno != 0 {
			return sent, errno
		}
		sent += int(n)
	}
	return sent, nil
}

// rawAddrPort decodes a raw sockaddr_in or sockaddr_in6.
func rawAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port)
	}
	return netip.AddrPort{}
}

// sockaddrLen is the length of the sockaddr in sa.
func sockaddrLen(sa *unix.RawSockaddrInet6) uint32 {
	if sa.Family == unix.AF_INET {
		return unix.SizeofSockaddrInet4
	}
	return unix.SizeofSockaddrInet6
}

// sendUp sends msgs up a flow's connected socket fd, each after hdr bytes
// of header, without waiting. A datagram the kernel refuses on its own
// (EMSGSIZE: too big once the header is added) is skipped and counted in
// skipped, as a router drops what it cannot forward. It stops at EAGAIN
// (again) or ENOBUFS with rest unsent, or with err once the socket itself
// is refused or gone. bytes is the payload that went up.
func sendUp(fd uintptr, msgs []mmsghdr, hdr int) (rest []mmsghdr, bytes, skipped int, again bool, err error) {
	for len(msgs) > 0 {
		sent, serr := sendmmsg(fd, msgs)
		for _, m := range msgs[:sent] {
			bytes += int(m.n) - hdr
		}
		msgs = msgs[sent:]
		switch {
		case serr == nil:
		case serr == syscall.EINTR:
		case serr == syscall.EAGAIN:
			return msgs, bytes, skipped, true, nil
		case serr == syscall.ENOBUFS:
			return msgs, bytes, skipped, false, nil
		case udpSocketGone(serr):
			return msgs, bytes, skipped, false, serr
		default:
			msgs = msgs[1:]
			skipped++
		}
	}
	return nil, bytes, skipped, false, nil
}

// udpSocketGone reports whether a send's error means the flow's socket
// can carry nothing more (the program's port is closed, the route to it
// gone), rather than that one datagram could not go.
func udpSocketGone(err error) bool {
	switch err {
	case syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EHOSTDOWN,
		syscall.ENETDOWN, syscall.ENOTCONN, syscall.EPIPE, syscall.EBADF, syscall.ENOTSOCK,
		syscall.EDESTADDRREQ, syscall.ECONNRESET:
		return true
	}
	return false
}
