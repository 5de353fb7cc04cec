package l4

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// connectPollSlice bounds one blocking wait for a raw connect, so that a
// cancelled context is noticed within it.
const connectPollSlice = 20 * time.Millisecond

// dialRaw connects to upstream like dial (same gate, attempt timeouts and
// retries) but with raw system calls, for connections the event loop will
// carry: the socket never enters Go's netpoller, so there is no epoll
// registration to add and remove, no getsockname/getpeername, and no
// descriptor to duplicate before the hand-over. The caller owns the
// returned non-blocking descriptor.
func (s *Server) dialRaw(ctx context.Context, upstream netip.AddrPort) (int, error) {
	fd := -1
	err := s.dialGated(ctx, upstream, func(ctx context.Context, timeout time.Duration) error {
		var err error
		fd, err = connectRaw(ctx, upstream, timeout)
		return err
	})
	return fd, err
}

// connectRaw makes one connect attempt, giving up after timeout (with an
// error that is a net.Error timeout, os.ErrDeadlineExceeded) or when ctx
// ends.
func connectRaw(ctx context.Context, upstream netip.AddrPort, timeout time.Duration) (int, error) {
	var sa syscall.Sockaddr
	family := syscall.AF_INET
	if a := upstream.Addr().Unmap(); a.Is4() {
		sa = &syscall.SockaddrInet4{Port: int(upstream.Port()), Addr: a.As4()}
	} else {
		family = syscall.AF_INET6
		sa = &syscall.SockaddrInet6{Port: int(upstream.Port()), Addr: a.As16()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	// Small exchanges must not wait for Nagle, as with Go's sockets.
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
		syscall.Close(fd)
		return -1, os.NewSyscallError("setsockopt", err)
	}
	err = syscall.Connect(fd, sa)
	if err == nil {
		return fd, nil
	}
	if err != syscall.EINPROGRESS {
		syscall.Close(fd)
		return -1, os.NewSyscallError("connect", err)
	}
	if err := waitConnect(ctx, fd, timeout); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// pollFd is struct pollfd.
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

const (
	pollOut = 0x4
	pollErr = 0x8
	pollHup = 0x10
)

// waitConnect waits for fd's non-blocking connect to finish. On the
// loopback the handshake usually completes within the connect call, so a
// first poll that does not block answers; only a slow upstream (a full
// accept queue) makes the goroutine block in ppoll, in slices of
// connectPollSlice so that ctx is honoured.
func waitConnect(ctx context.Context, fd int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	pfd := pollFd{fd: int32(fd), events: pollOut}
	var ts syscall.Timespec
	n, _, e := syscall.RawSyscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	for e != 0 || n == 0 {
		if e != 0 && e != syscall.EINTR {
			return os.NewSyscallError("ppoll", e)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("connecting: %w", os.ErrDeadlineExceeded)
		}
		ts = syscall.NsecToTimespec(int64(min(left, connectPollSlice)))
		n, _, e = syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	}
	if pfd.revents&(pollErr|pollHup) == 0 {
		return nil // writable and no error: connected
	}
	soErr, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ERROR)
	if err != nil {
		return os.NewSyscallError("getsockopt", err)
	}
	if soErr != 0 {
		return os.NewSyscallError("connect", syscall.Errno(soErr))
	}
	return os.NewSyscallError("connect", syscall.ECONNRESET)
}
