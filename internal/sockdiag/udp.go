package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrNoUDPDiag is UDPBound's answer on a kernel without UDP sock_diag (no
// udp_diag module): read /proc/net/udp instead.
var ErrNoUDPDiag = errors.New("sock_diag: no UDP lookups on this kernel")

// loopbackIndex is lo's interface index in every network namespace.
const loopbackIndex = 1

// UDPBound reports whether a datagram sent to ap would reach an unconnected
// UDP socket: one bound to ap's port, on its address or a wildcard (IPv4 or
// dual-stack IPv6). It asks the kernel for that one socket, the lookup its
// receive path does, rather than dumping the table: its cost does not grow
// with the sockets on the machine.
func UDPBound(ap netip.AddrPort) (bool, error) {
	if !udpDiagWorks() {
		return false, ErrNoUDPDiag
	}
	return udpLookup(ap)
}

// udpDiagWorks tells, once, whether the kernel answers UDP lookups: where
// the udp_diag module is missing, a lookup fails with ENOENT, as one that
// found nothing does; so look up a socket bound here.
var udpDiagWorks = sync.OnceValue(func() bool {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return false
	}
	defer c.Close()
	found, err := udpLookup(c.LocalAddr().(*net.UDPAddr).AddrPort())
	return err == nil && found
})

func udpLookup(ap netip.AddrPort) (bool, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return false, fmt.Errorf("sock_diag: %w", os.NewSyscallError("socket", err))
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, udpRequest(ap), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return false, fmt.Errorf("sock_diag: %w", os.NewSyscallError("sendto", err))
	}
	var buf [1024]byte // one inet_diag_msg, or an error
	for {
		n, _, err := unix.Recvfrom(fd, buf[:], 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("sock_diag: %w", os.NewSyscallError("recvfrom", err))
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return false, fmt.Errorf("sock_diag: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.SOCK_DIAG_BY_FAMILY:
				return true, nil
			case unix.NLMSG_ERROR:
				errno := unix.ENOENT
				if len(m.Data) >= 4 {
					errno = unix.Errno(-int32(binary.NativeEndian.Uint32(m.Data)))
				}
				if errno == unix.ENOENT {
					return false, nil
				}
				return false, fmt.Errorf("sock_diag: %w", errno)
			case unix.NLMSG_DONE:
				return false, nil
			}
		}
	}
}

// udpRequest asks for the UDP socket that would receive a datagram sent to
// ap from no address in particular, which rules out connected sockets.
// The kernel names the datagram's destination "dst" (its comment: swapped
// for historical reasons). On the loopback it names lo as the interface,
// so that a socket bound to that device is found too.
func udpRequest(ap netip.AddrPort) []byte {
	total := unix.SizeofNlMsghdr + sizeofReq
	b := make([]byte, total)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(total))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST)
	r := b[unix.SizeofNlMsghdr:]
	addr := ap.Addr().Unmap()
	r[0] = unix.AF_INET
	if addr.Is6() {
		r[0] = unix.AF_INET6
	}
	r[1] = unix.IPPROTO_UDP
	ne.PutUint32(r[4:], ^uint32(0))
	// struct inet_diag_sockid: sport, dport, src[4], dst[4], if, cookie[2].
	id := r[8:]
	binary.BigEndian.PutUint16(id[2:], ap.Port())
	copy(id[20:36], addr.AsSlice())
	if addr.IsLoopback() {
		ne.PutUint32(id[36:], loopbackIndex)
	}
	ne.PutUint32(id[40:], ^uint32(0)) // INET_DIAG_NOCOOKIE
	ne.PutUint32(id[44:], ^uint32(0))
	return b
}
