package rawnet

import (
	"net"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// BenchmarkConnectUnix is the cost of not following a symlink at an
// upstream's path: ConnectUnix (open O_PATH|O_NOFOLLOW, fstat, connect
// through /proc/self/fd/N, as ConnectUnix does) against a plain connect by
// path, to a listener that accepts and closes.
func BenchmarkConnectUnix(b *testing.B) {
	path := filepath.Join(b.TempDir(), "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// Blocking sockets, so that a full accept queue waits in the kernel,
	// not in ConnectUnix's retry pauses: the two differ only in the path.
	connect := func(b *testing.B, name string) {
		fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: name}); err != nil {
			b.Fatal(err)
		}
		syscall.Close(fd)
	}
	b.Run("by-path", func(b *testing.B) {
		for b.Loop() {
			connect(b, path)
		}
	})
	b.Run("no-follow", func(b *testing.B) {
		for b.Loop() {
			pfd, err := openSocketFile(path)
			if err != nil {
				b.Fatal(err)
			}
			connect(b, "/proc/self/fd/"+strconv.Itoa(pfd))
			syscall.Close(pfd)
		}
	})
	// What the no-follow connect adds, alone: the open, fstat and close.
	b.Run("open-only", func(b *testing.B) {
		for b.Loop() {
			pfd, err := openSocketFile(path)
			if err != nil {
				b.Fatal(err)
			}
			syscall.Close(pfd)
		}
	})
}
