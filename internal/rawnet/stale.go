package rawnet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// RemoveStaleSocket makes way at path for a new socket: nothing there is
// fine; a socket nobody listens on (connect refused: one a killed process
// left) is removed; anything else (a live socket, a symlink, a regular
// file) is an error, and is left where it is. It serves both a unix:
// listen address (l4) and the socket file picked for $SOCKET (lifecycle).
func RemoveStaleSocket(path string) error {
	var st syscall.Stat_t
	err := syscall.Lstat(path, &st)
	if errors.Is(err, syscall.ENOENT) {
		return nil
	}
	if err != nil {
		return os.NewSyscallError("lstat", err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
		return fmt.Errorf("%s exists and is %s, not a socket: DynaPM only replaces a stale socket file; remove it or pick another path", path, fileKind(st.Mode))
	}
	fd, err := ConnectUnix(context.Background(), path, 0)
	if err == nil {
		syscall.Close(fd)
		return fmt.Errorf("%s: another program listens on this socket: %w", path, syscall.EADDRINUSE)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: checking whether the socket is stale: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the stale socket: %w", err)
	}
	return nil
}

// fileKind names a file's type for an error.
func fileKind(mode uint32) string {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFLNK:
		return "a symlink"
	case syscall.S_IFREG:
		return "a regular file"
	case syscall.S_IFDIR:
		return "a directory"
	}
	return "a special file"
}
