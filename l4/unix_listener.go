package l4

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"github.com/dynapm/dynapm/internal/rawnet"
	"golang.org/x/sys/unix"
)

// SocketFile is how the socket file of a unix: listen address is made, as
// systemd's SocketMode=, SocketUser= and SocketGroup= say.
type SocketFile struct {
	// Mode is the file's permission bits.
	Mode os.FileMode
	// UID and GID own the file; -1 leaves the daemon's.
	UID, GID int
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
	if err := rawnet.RemoveStaleSocket(path); err != nil {
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
