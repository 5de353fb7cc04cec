package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/sockdiag"
)

// handoff: socket. The program gets the app's listening sockets and
// accepts from them itself: the Manager starts and stops it, and without
// leases to count it asks the kernel for the app's connections at each
// idle check.

// Sockets gives a handoff program the listening sockets of listen
// addresses, duplicates the caller closes. l4.Server satisfies it.
type Sockets interface {
	ListenFiles(addrs []string) ([]*os.File, error)
}

// errNoSockets is a handoff start in a Manager with no Sockets.
var errNoSockets = errors.New("handoff needs the listening sockets, and the manager has none to give")

// readyAtSpawn is the readiness of a handoff program without a ready:
// key: its sockets listen before it runs, so a connection waits in their
// backlog until it accepts, and it serves from its first instruction, as
// systemd's Type=simple.
var readyAtSpawn = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Handoff starts app name, if it is not running, for a connection waiting
// in the backlog of one of its listening sockets, and returns a channel
// closed once the program holding the sockets is gone (recorded stopped,
// crashed or failed). It waits as Wake does while the app starts or stops.
// It satisfies l4.HandoffWaker.
func (m *Manager) Handoff(ctx context.Context, name string) (<-chan struct{}, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, in, err := m.waitReadyLocked(ctx, name, "connection", false, nil)
	if err != nil {
		return nil, fmt.Errorf("waking app %q: %w", name, err)
	}
	return in.done, nil
}

// handoffFiles are the sockets for a start of spec, with their names for
// LISTEN_FDNAMES (the app's name, as systemd names a socket unit's), or
// none for an app that is proxied.
func (m *Manager) handoffFiles(spec *appfile.Spec) ([]*os.File, []string, error) {
	if spec.Handoff != appfile.HandoffSocket {
		return nil, nil, nil
	}
	if m.cfg.Sockets == nil {
		return nil, nil, errNoSockets
	}
	files, err := m.cfg.Sockets.ListenFiles(spec.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("passing the listening sockets: %w", err)
	}
	names := make([]string, len(files))
	for i := range names {
		names[i] = spec.Name
	}
	return files, names, nil
}

// handoffBusy counts the established connections of a ready handoff:
// socket app from the kernel (outside the lock: it is a netlink
// exchange) and reports whether there are any. They are its activity: the
// idle countdown starts over, and the count is taken again a quarter of
// idle_timeout later, so that an app stops within 1.25 idle_timeout of its
// last connection seen. A count that fails keeps the app up: stopping it
// could cut connections.
func (m *Manager) handoffBusy(a *app) bool {
	m.mu.Lock()
	spec := a.spec
	ok := spec.Handoff == appfile.HandoffSocket && a.state == Ready && !m.closed
	m.mu.Unlock()
	if !ok {
		return false
	}
	n, err := sockdiag.Established(listenPorts(spec))
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.apps[a.name] != a || a.state != Ready {
		return true // moved on meanwhile: nothing to stop here
	}
	a.kernelConns = n
	if err != nil {
		m.log.Warn("counting connections for the idle check; keeping the app up", "app", a.name, "err", err)
	}
	if err == nil && n == 0 {
		return false
	}
	now := time.Now()
	a.lastActivity = now
	for _, in := range a.insts {
		in.lastActivity = now
	}
	a.idleTimer.Reset(max(idleTimeout(spec)/4, time.Millisecond))
	return true
}

// listenPorts are the ports of spec's listen addresses.
func listenPorts(spec *appfile.Spec) []uint16 {
	ports := make([]uint16, 0, len(spec.Listen))
	for _, l := range spec.Listen {
		_, p, err := net.SplitHostPort(l)
		if err != nil {
			continue // validated by appfile
		}
		if n, err := strconv.ParseUint(p, 10, 16); err == nil {
			ports = append(ports, uint16(n))
		}
	}
	return ports
}

// exitedOnItsOwn reports whether in's program ended as a socket-activated
// service may when idle: a handoff: socket program that exited with status
// 0 when nobody asked it to stop, after running at least the shortest
// backoff. That is a stop, not a crash; an always app is started again all
// the same. A program that exits 0 at once is a crash: a connection it
// left in the backlog would start it again and again without a pause.
func (m *Manager) exitedOnItsOwn(a *app, in *instance) bool {
	return in.spec.Handoff == appfile.HandoffSocket && !in.readyAt.IsZero() &&
		in.proc.Err() == nil && mode(a.spec) != appfile.Always &&
		time.Since(in.readyAt) >= m.cfg.BackoffMin
}

// exitedLocked records such an exit: the app is stopped, and its sockets
// are watched again for the next connection.
func (m *Manager) exitedLocked(a *app, in *instance) {
	in.stopReq, in.stopReason = true, "exited"
	if a.active() == 0 {
		a.setState(Stopping)
	}
	m.finishStopLocked(a, in, nil, "")
}
