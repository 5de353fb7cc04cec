// Package rawnet connects TCP and Unix stream sockets with raw system calls, outside Go's
// netpoller: a descriptor that never enters Go's epoll needs no
// registration to add and remove, no getsockname/getpeername, and can be
// handed to an event loop of the caller's own, or closed at once (a
// readiness probe). Linux only, like the rest of DynaPM's data path.
package rawnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pollSlice bounds one blocking wait for a connect, so that a cancelled
// context is noticed within it.
const pollSlice = 20 * time.Millisecond

// Connect makes one connect attempt to addr and returns the connected,
// non-blocking, close-on-exec descriptor, which the caller owns. It gives
// up after timeout (an error wrapping os.ErrDeadlineExceeded, a net.Error
// timeout) or when ctx ends. A zero timeout only tries the poll that does
// not block: on the loopback the handshake completes within the connect
// call, so a running program answers it, and a connect that does not
// complete at once (a full accept queue) fails at once.
func Connect(ctx context.Context, addr netip.AddrPort, timeout time.Duration) (int, error) {
	var sa syscall.Sockaddr
	family := syscall.AF_INET
	if a := addr.Addr().Unmap(); a.Is4() {
		sa = &syscall.SockaddrInet4{Port: int(addr.Port()), Addr: a.As4()}
	} else {
		family = syscall.AF_INET6
		sa = &syscall.SockaddrInet6{Port: int(addr.Port()), Addr: a.As16()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
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

// waitConnect waits for fd's non-blocking connect to finish. On the
// loopback the handshake (or the reset of a closed port) is processed
// before connect returns, so a first poll that does not block answers;
// only a slow peer (a full accept queue, a remote host) makes the
// goroutine block in ppoll, in slices of pollSlice so that ctx is
// honoured.
func waitConnect(ctx context.Context, fd int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	pfd := unix.PollFd{Fd: int32(fd), Events: unix.POLLOUT}
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
		ts = syscall.NsecToTimespec(int64(min(left, pollSlice)))
		n, _, e = syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	}
	if pfd.Revents&(unix.POLLERR|unix.POLLHUP) == 0 {
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

// ConnectUnix makes one connect attempt to the Unix stream socket file at
// path and returns the connected, non-blocking, close-on-exec descriptor,
// which the caller owns. A Unix connect completes at once or fails: a
// listener whose queue is full answers EAGAIN, and the attempt is tried
// again, a pollSlice apart at most, until timeout (then an error wrapping
// os.ErrDeadlineExceeded) or until ctx ends. A zero timeout tries once. A
// missing file is ENOENT, a file nobody listens on ECONNREFUSED.
//
// A symlink at path is not followed (an error wrapping ELOOP), nor is
// anything but a socket connected to (ENOTSOCK): the daemon, often root,
// connects where an app file says, and a symlink there would let whoever
// planted it choose the socket. The file is opened O_PATH|O_NOFOLLOW and
// connected to through /proc/self/fd/N, so no path is resolved again
// between the check and the connect (as systemd's connect_unix_path does).
func ConnectUnix(ctx context.Context, path string, timeout time.Duration) (int, error) {
	pfd, err := openSocketFile(path)
	if err != nil {
		return -1, err
	}
	defer syscall.Close(pfd)
	sa := &syscall.SockaddrUnix{Name: "/proc/self/fd/" + strconv.Itoa(pfd)}
	deadline := time.Now().Add(timeout)
	wait := 50 * time.Microsecond
	for {
		fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return -1, os.NewSyscallError("socket", err)
		}
		err = syscall.Connect(fd, sa)
		if err == nil {
			return fd, nil
		}
		syscall.Close(fd)
		if err != syscall.EAGAIN {
			return -1, &os.PathError{Op: "connect", Path: path, Err: err}
		}
		if err := ctx.Err(); err != nil {
			return -1, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return -1, fmt.Errorf("connecting to %s: its accept queue is full: %w", path, os.ErrDeadlineExceeded)
		}
		time.Sleep(min(wait, left))
		wait = min(2*wait, pollSlice)
	}
}

// openSocketFile opens the socket file at path for ConnectUnix, O_PATH
// (no permission on the file is needed, nothing is read) and without
// following a symlink as its last component.
func openSocketFile(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return -1, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFSOCK:
		return fd, nil
	case unix.S_IFLNK:
		syscall.Close(fd)
		return -1, fmt.Errorf("%s is a symlink, which DynaPM does not follow to a socket: %w", path, syscall.ELOOP)
	}
	syscall.Close(fd)
	return -1, fmt.Errorf("%s is not a socket: %w", path, syscall.ENOTSOCK)
}

// ErrWrongPeer is a socket file whose listener is not the app's user.
var ErrWrongPeer = errors.New("the socket's listener is not the app's user")

// CheckPeer refuses fd, connected to the socket file path, unless its
// listener (the process that called listen, SO_PEERCRED) is uid, the user
// the app's program runs as: another program's socket at the path
// (docker.sock, say) is no sign that the app serves, and the daemon, often
// root, must not connect the app's clients to it. It serves both the
// dials (l4) and the readiness probes (lifecycle).
func CheckPeer(fd int, path string, uid uint32) error {
	peer, err := PeerUID(fd)
	if err != nil {
		return err
	}
	if peer != uid {
		return fmt.Errorf("connecting to %s: %w: uid %d listens there, the app runs as uid %d", path, ErrWrongPeer, peer, uid)
	}
	return nil
}

// PeerUID returns the uid of the process that made the listening socket
// fd is connected to (SO_PEERCRED), for a Unix socket.
func PeerUID(fd int) (uint32, error) {
	cred, err := syscall.GetsockoptUcred(fd, syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	if err != nil {
		return 0, os.NewSyscallError("getsockopt SO_PEERCRED", err)
	}
	return cred.Uid, nil
}
