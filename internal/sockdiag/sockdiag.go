// Package sockdiag asks the kernel's socket tables with sock_diag netlink
// (NETLINK_SOCK_DIAG, INET_DIAG), as ss(8) does: how many TCP connections
// are established on some ports, and whether a UDP socket would receive a
// datagram sent to an address. No /proc parsing: with a filter, or a
// lookup, the kernel only sends the sockets asked for.
package sockdiag

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// Layouts of <linux/inet_diag.h> that golang.org/x/sys/unix has no types for.
const (
	sizeofReq      = 56 // struct inet_diag_req_v2
	sizeofMsg      = 72 // struct inet_diag_msg
	sizeofBCOp     = 4  // struct inet_diag_bc_op
	reqBytecode    = 1  // INET_DIAG_REQ_BYTECODE
	bcJump         = 1  // INET_DIAG_BC_JMP
	bcSourceGE     = 2  // INET_DIAG_BC_S_GE
	bcSourceLE     = 3  // INET_DIAG_BC_S_LE
	tcpEstablished = 1
	// maxFiltered bounds the ports put in the kernel's filter; more are
	// filtered here.
	maxFiltered = 64
)

// Established returns how many TCP connections on this network namespace
// are established with a local port among ports (IPv4 and IPv6): an
// accepted connection, or one in a listener's accept queue.
func Established(ports []uint16) (int, error) {
	if len(ports) == 0 {
		return 0, nil
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, fmt.Errorf("sock_diag: %w", os.NewSyscallError("socket", err))
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("sock_diag: %w", os.NewSyscallError("bind", err))
	}
	n := 0
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		c, err := dump(fd, family, ports)
		if err != nil {
			return 0, err
		}
		n += c
	}
	return n, nil
}

// dump asks for the established TCP sockets of family whose source port is
// in ports and counts the answers.
func dump(fd int, family uint8, ports []uint16) (int, error) {
	if err := unix.Sendto(fd, request(family, ports), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("sock_diag: %w", os.NewSyscallError("sendto", err))
	}
	buf := make([]byte, 32<<10)
	count := 0
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return 0, fmt.Errorf("sock_diag: %w", os.NewSyscallError("recvfrom", err))
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return 0, fmt.Errorf("sock_diag: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return count, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return 0, fmt.Errorf("sock_diag: %w", unix.Errno(-errno))
					}
				}
				return count, nil
			case unix.SOCK_DIAG_BY_FAMILY:
				if len(m.Data) < sizeofMsg {
					continue
				}
				// idiag_state, then the source port (big-endian) of the
				// socket id: the local port.
				sport := binary.BigEndian.Uint16(m.Data[4:6])
				if m.Data[1] == tcpEstablished && slices.Contains(ports, sport) {
					count++
				}
			}
		}
	}
}

// request is one netlink dump request for the established TCP sockets of
// family, with a filter on the source port when ports are few.
func request(family uint8, ports []uint16) []byte {
	var bc []byte
	if len(ports) <= maxFiltered {
		bc = portFilter(ports)
	}
	attrLen := 0
	if len(bc) > 0 {
		attrLen = unix.SizeofRtAttr + len(bc)
	}
	total := unix.SizeofNlMsghdr + sizeofReq + attrLen
	b := make([]byte, total)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(total))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	r := b[unix.SizeofNlMsghdr:]
	r[0] = family
	r[1] = unix.IPPROTO_TCP
	ne.PutUint32(r[4:], 1<<tcpEstablished)
	if len(bc) > 0 {
		a := r[sizeofReq:]
		ne.PutUint16(a[0:], uint16(attrLen))
		ne.PutUint16(a[2:], reqBytecode)
		copy(a[unix.SizeofRtAttr:], bc)
	}
	return b
}

// portFilter is inet_diag bytecode accepting a socket whose source port is
// one of ports. Per port: "sport >= p", "sport <= p" (each two ops, the
// second carrying the port), then a jump to the end, which accepts; a
// comparison that fails goes on to the next port, and past the last one,
// which rejects. Every op's "yes" leads to the next op, as the kernel's
// check of the program wants every jump target on that chain.
func portFilter(ports []uint16) []byte {
	const clause = 5 * sizeofBCOp
	total := clause * len(ports)
	b := make([]byte, total)
	ne := binary.NativeEndian
	op := func(at int, code uint8, yes, no int) {
		b[at] = code
		b[at+1] = uint8(yes)
		ne.PutUint16(b[at+2:], uint16(no))
	}
	for i, p := range ports {
		off := i * clause
		next := clause // the next port's clause; past the last: reject
		if i == len(ports)-1 {
			next = total - off + 4
		}
		op(off, bcSourceGE, 2*sizeofBCOp, next)
		op(off+sizeofBCOp, 0, 0, int(p))
		op(off+2*sizeofBCOp, bcSourceLE, 2*sizeofBCOp, next-2*sizeofBCOp)
		op(off+3*sizeofBCOp, 0, 0, int(p))
		op(off+4*sizeofBCOp, bcJump, sizeofBCOp, total-off-4*sizeofBCOp)
	}
	return b
}
