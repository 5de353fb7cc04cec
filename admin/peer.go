package admin

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

// ownerListener accepts only connections from the daemon's own user (or
// root). The socket file is chmod'ed to 0600 right after bind, but a
// connection made in between would already be queued: checking the peer's
// credentials closes that window and any other way around the file mode.
type ownerListener struct {
	*net.UnixListener
	uid uint32
}

func newOwnerListener(ln *net.UnixListener) *ownerListener {
	return &ownerListener{UnixListener: ln, uid: uint32(os.Geteuid())}
}

// Accept returns the next connection from an allowed peer; others are
// closed unanswered.
func (l *ownerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && (uid == l.uid || uid == 0) {
			return c, nil
		}
		c.Close()
	}
}

// peerUID is the effective uid of the process at the other end of c.
func peerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, fmt.Errorf("reading peer credentials: %w", credErr)
	}
	return cred.Uid, nil
}
