package l4

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/dynapm/dynapm/internal/rawnet"
	"golang.org/x/sys/unix"
)

// UnixPrefix starts a listen address that is a Unix stream socket file,
// "unix:/run/app.sock", as appfile spells it.
const UnixPrefix = "unix:"

// SocketFile is how the socket file of a unix: listen address is made, as
// systemd's SocketMode=, SocketUser= and SocketGroup= say.
type SocketFile struct {
	// Mode is the file's permission bits.
	Mode os.FileMode
	// UID and GID own the file; -1 leaves the daemon's.
	UID, GID int
}

// unixPath returns the socket file of a unix: listen address, or "".
func unixPath(addr string) string {
	p, ok := strings.CutPrefix(addr, UnixPrefix)
	if !ok {
		return ""
	}
	return p
}

// socketOf is the SocketFile the first route of an address asks for.
func socketOf(routes []Route) SocketFile {
	if len(routes) == 0 {
		return SocketFile{Mode: 0o666, UID: -1, GID: -1}
	}
	return routes[0].Socket
}

// listenUnix binds the socket file path and listens on it, made as sock
// says.
//
// The daemon often runs as root, and path comes from an app file, so the
// file is only ever made, and removed, in a directory that
// Server.CheckSocketDir accepts (one nobody but root and the daemon's user
// can change: nothing can be swapped in it between a check and a use). A
// file already at path is replaced only if it is a socket nobody listens
// on (a stale one, from a daemon that was killed); a symlink, a regular
// file or a live socket is left alone and the listen fails. The mode and
// owner are set between bind and listen, so no client ever connects
// through a looser mode. It returns the file's identity, for
// removeSocketFile.
func (s *Server) listenUnix(path string, sock SocketFile) (net.Listener, fileID, error) {
	if s.CheckSocketDir != nil {
		if err := s.CheckSocketDir(filepath.Dir(path)); err != nil {
			return nil, fileID{}, err
		}
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, fileID{}, err
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fileID{}, os.NewSyscallError("socket", err)
	}
	fail := func(err error, bound bool) (net.Listener, fileID, error) {
		syscall.Close(fd)
		if bound {
			os.Remove(path)
		}
		return nil, fileID{}, err
	}
	// bind does not follow a symlink at path: it fails with EADDRINUSE.
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		return fail(os.NewSyscallError("bind", err), false)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return fail(os.NewSyscallError("lstat", err), true)
	}
	id := fileID{dev: st.Dev, ino: st.Ino}
	if err := unix.Fchmodat(unix.AT_FDCWD, path, uint32(sock.Mode.Perm()), 0); err != nil {
		return fail(fmt.Errorf("setting the mode of %s: %w", path, err), true)
	}
	if sock.UID >= 0 || sock.GID >= 0 {
		if err := os.Lchown(path, sock.UID, sock.GID); err != nil {
			return fail(fmt.Errorf("setting the owner of %s: %w", path, err), true)
		}
	}
	if err := syscall.Listen(fd, syscall.SOMAXCONN); err != nil {
		return fail(os.NewSyscallError("listen", err), true)
	}
	f := os.NewFile(uintptr(fd), path)
	ln, err := net.FileListener(f) // a listener made from a file never unlinks it
	f.Close()
	if err != nil {
		os.Remove(path)
		return nil, fileID{}, err
	}
	return ln, id, nil
}

// fileID names one file for good: its device and inode.
type fileID struct{ dev, ino uint64 }

// removeStaleSocket makes way at path for a new socket: nothing there is
// fine; a socket nobody listens on (connect refused) is removed; anything
// else is an error, and is left where it is.
func removeStaleSocket(path string) error {
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
	fd, err := rawnet.ConnectUnix(context.Background(), path, 0)
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

// removeSocketFile removes the socket file a unix: listener made, once it
// is closed: only if the file at its path is still that very socket
// (anything else was put there since, by whoever may write the directory,
// and is not the listener's to remove).
func (l *listener) removeSocketFile() {
	if l.sockPath == "" {
		return
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(l.sockPath, &st); err != nil {
		return
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFSOCK || (fileID{dev: st.Dev, ino: st.Ino}) != l.sockID {
		return
	}
	os.Remove(l.sockPath)
}
