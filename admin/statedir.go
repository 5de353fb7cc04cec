package admin

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// CheckPrivateDir refuses a directory that users other than its owner may
// write to: anyone who can write there could replace the admin socket or
// the app logs.
func CheckPrivateDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("checking state directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("state directory %s is not a directory", dir)
	}
	if perm := st.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("state directory %s is writable by group or others (mode %#o); fix it with: chmod 700 %s", dir, perm, dir)
	}
	return nil
}

// maxSocketPath is the longest path a Unix socket can be bound or dialed
// at: sun_path holds 108 bytes, the last one the terminating NUL.
const maxSocketPath = len(syscall.RawSockaddrUnix{}.Path) - 1

// CheckSocketPath refuses a socket path the kernel cannot take, with what
// to do about it rather than the bare EINVAL bind and connect return.
func CheckSocketPath(path string) error {
	if len(path) > maxSocketPath {
		return fmt.Errorf("admin socket path %s is %d bytes, over the %d bytes a Unix socket path may have; use a shorter state directory (-state DIR, or state_dir in the settings)",
			path, len(path), maxSocketPath)
	}
	return nil
}

// lockStateDir takes an exclusive lock on DIR/dynapm.lock for as long as the
// returned file stays open, so that two daemons never share a state
// directory (they would fight over the socket and the app logs).
func lockStateDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "dynapm.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another dynapm is running with state directory %s (%s is locked)", dir, path)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return f, nil
}

// clearStaleSocket removes a socket file left by a daemon that died, and
// refuses when something still answers on it or the path is not a socket.
func clearStaleSocket(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking socket path: %w", err)
	}
	if st.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; remove it or choose another state directory", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("another dynapm is answering on %s", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing stale socket: %w", err)
	}
	return nil
}
