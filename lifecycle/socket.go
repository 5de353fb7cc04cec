package lifecycle

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/rawnet"
	"github.com/dynapm/dynapm/internal/unixaddr"
)

// socketsDir is the directory of the state directory that holds the
// socket files DynaPM picks for $SOCKET.
const socketsDir = "sockets"

// SocketPath is the socket file DynaPM picks for app when its command
// names $SOCKET: STATE/sockets/APP.sock, an absolute path. The state
// directory is private to the daemon's user, so nobody else can put
// anything there (appfile refuses $SOCKET with user:, whose program could
// not create the file).
func SocketPath(stateDir, app string) string {
	if abs, err := filepath.Abs(stateDir); err == nil {
		stateDir = abs
	}
	return filepath.Join(stateDir, socketsDir, app+".sock")
}

// upstreamSocket is the socket file spec's program serves on: its unix:
// upstream, the file DynaPM picks for $SOCKET, or "" for a port.
func (m *Manager) upstreamSocket(spec *appfile.Spec) string {
	if p := spec.UnixUpstream(); p != "" {
		return p
	}
	if spec.PicksSocket() {
		return SocketPath(m.cfg.StateDir, spec.Name)
	}
	return ""
}

// preparePickedSocket makes the directory of a picked socket file and
// removes what a previous run left at path: only a stale socket
// (rawnet.RemoveStaleSocket), in the daemon's private directory.
func preparePickedSocket(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("making the directory of $SOCKET: %w", err)
	}
	if err := rawnet.RemoveStaleSocket(path); err != nil {
		return fmt.Errorf("$SOCKET: %w", err)
	}
	return nil
}

// connectSocket is one probe of r's socket file: a connect, whose
// listener must be r.owner's when r.checkOwner (a symlink or another
// program's socket at the path is no sign that the app's program
// serves). It returns the connection, which the caller owns.
func (r *readiness) connectSocket(ctx context.Context) (int, error) {
	fd, err := rawnet.ConnectUnix(ctx, r.socket, probeTryTimeout)
	if err != nil || !r.checkOwner {
		return fd, err
	}
	if err := rawnet.CheckPeer(fd, r.socket, r.owner); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// upstreamText is where in's program serves, for logs and status: its
// socket file as unix:/path, or host:port; "" when none is picked yet.
func (in *instance) upstreamText() string {
	if in.socket != "" {
		return unixaddr.Prefix + in.socket
	}
	if in.upstream.IsValid() {
		return in.upstream.String()
	}
	return ""
}
