package l4

import (
	"context"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/internal/rawnet"
)

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

// connectRaw makes one connect attempt (see rawnet.Connect) and sets
// TCP_NODELAY on the socket.
func connectRaw(ctx context.Context, upstream netip.AddrPort, timeout time.Duration) (int, error) {
	fd, err := rawnet.Connect(ctx, upstream, timeout)
	if err != nil {
		return -1, err
	}
	// Small exchanges must not wait for Nagle, as with Go's sockets.
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
		syscall.Close(fd)
		return -1, os.NewSyscallError("setsockopt", err)
	}
	return fd, nil
}
