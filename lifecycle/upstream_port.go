package lifecycle

import (
	"fmt"
	"os"
	"syscall"

	"github.com/dynapm/dynapm/appfile"
)

// portTries bounds the search for a port free in both TCP and UDP: the
// kernel hands out one protocol's free port, which the other protocol has
// taken only by chance.
const portTries = 64

// freeLoopbackPortFor picks a loopback port free in every protocol the app
// listens on: its program binds $PORT in each of them.
func freeLoopbackPortFor(spec *appfile.Spec) (int, error) {
	tcp, udp := spec.Protocols()
	if !udp {
		return freeLoopbackPortType(syscall.SOCK_STREAM, 0)
	}
	for range portTries {
		port, err := freeLoopbackPortType(syscall.SOCK_DGRAM, 0)
		if err != nil || !tcp {
			return port, err
		}
		if _, err := freeLoopbackPortType(syscall.SOCK_STREAM, port); err == nil {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no loopback port free in both TCP and UDP after %d tries", portTries)
}

// freeLoopbackPortType binds a socket of sotype to 127.0.0.1:port (0: one
// from the ephemeral range) and returns the port it got; closing the
// socket frees it for the program. Raw calls, on the path of every cold
// start: a Go listener would add listen, an epoll registration and its
// removal, and net's getsockname.
func freeLoopbackPortType(sotype, port int) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, sotype|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, os.NewSyscallError("socket", err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
		return 0, os.NewSyscallError("bind", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return 0, os.NewSyscallError("getsockname", err)
	}
	return sa.(*syscall.SockaddrInet4).Port, nil
}
