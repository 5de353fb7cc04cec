package admin

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/internal/trust"
)

// CheckPrivateDir refuses a state directory that anyone but the daemon's
// user (and root) could change: one owned by another user, writable by
// group or others, or below a directory that is (see internal/trust).
// Anyone who could write there could replace the admin socket, the app
// logs or the records of running programs.
func CheckPrivateDir(dir string) error {
	return checkPrivateDir(trust.New(), dir)
}

func checkPrivateDir(c trust.Checker, dir string) error {
	err := c.Dir(dir, "state directory")
	var te *trust.Error
	if errors.As(err, &te) && te.Subject == "state directory "+dir && strings.HasPrefix(te.Fix, "chmod") {
		// Private: the logs are nobody else's to read either.
		te.Fix = "chmod 700 " + dir
	}
	return err
}

// MakeStateDir creates the state directory, private to the daemon's user
// (mode 0700, as any directory above it that it creates), and checks it
// with CheckPrivateDir.
func MakeStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	return CheckPrivateDir(dir)
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
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
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
