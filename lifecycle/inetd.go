package lifecycle

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// handoff: inetd. One program per connection, the connection its stdin,
// stdout and fd 3, as systemd's Accept=yes: l4 accepts (at most
// scale.max programs at once) and the Manager runs the program, which
// lives as long as it wants. The app itself stays stopped: its programs
// are not instances, have no readiness, no idle timer and no backoff.

// inetdProg is one running program of an inetd app. Guarded by the
// Manager's lock.
type inetdProg struct {
	stop    chan struct{} // closed to ask the program to stop
	stopReq bool
	reason  string        // why it was asked to stop
	done    chan struct{} // closed once it is gone
	// pid and startedAt, once it runs, for status.
	pid       int
	startedAt time.Time
}

// requestStop asks p to stop, once.
func (p *inetdProg) requestStop(reason string) {
	if !p.stopReq {
		p.stopReq, p.reason = true, reason
		close(p.stop)
	}
}

// Inetd runs app name's program for one accepted connection, conn, which
// the caller may close once Inetd returns (the program has its own). It
// returns a channel closed once the program, and what it started in its
// process group, is gone. It satisfies l4.InetdWaker.
func (m *Manager) Inetd(ctx context.Context, name string, conn *os.File) (<-chan struct{}, error) {
	m.mu.Lock()
	a := m.apps[name]
	switch {
	case m.closed:
		m.mu.Unlock()
		return nil, fmt.Errorf("running a program of app %q: %w", name, ErrShuttingDown)
	case a == nil || a.removed || a.spec.Handoff != appfile.HandoffInetd:
		m.mu.Unlock()
		return nil, fmt.Errorf("running a program of app %q: %w", name, ErrUnknownApp)
	}
	spec := a.spec
	p := &inetdProg{stop: make(chan struct{}), done: make(chan struct{})}
	if a.inetd == nil {
		a.inetd = make(map[*inetdProg]struct{})
	}
	// Counted before it runs: a stop or a shutdown meanwhile waits for it.
	a.inetd[p] = struct{}{}
	a.starts++
	if m.cfg.Events != nil {
		m.cfg.Events.AppStarted(name, "connection")
	}
	m.mu.Unlock()

	began := time.Now()
	proc, err := m.startInetd(ctx, spec, conn)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		delete(a.inetd, p)
		close(p.done)
		a.lastErr = err.Error()
		m.log.Warn("app failed to start", "app", name, "handoff", appfile.HandoffInetd, "err", err)
		if m.cfg.Events != nil {
			m.cfg.Events.AppStopped(name, "failed")
		}
		return nil, fmt.Errorf("running a program of app %q: %w", name, err)
	}
	if m.cfg.Events != nil {
		m.cfg.Events.AppReady(name, time.Since(began))
	}
	p.pid, p.startedAt = proc.Pid(), began
	go m.runInetd(a, p, proc, spec)
	return p.done, nil
}

// startInetd starts spec's program on conn.
func (m *Manager) startInetd(ctx context.Context, spec *appfile.Spec, conn *os.File) (Process, error) {
	logf, _, err := m.openLog(spec.Name, time.Now(), nil)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the program holds its own
	drv, err := m.driverFor(spec)
	if err != nil {
		return nil, err
	}
	return drv.Start(ctx, StartRequest{
		Spec:        spec,
		Env:         buildEnv(spec, 0, 0, ""),
		Log:         logf,
		Sockets:     []*os.File{conn},
		SocketNames: []string{"connection"}, // systemd's name for it
		Conn:        conn,
	})
}

// runInetd waits for p's program to end, or for a stop request, and
// clears its process group either way.
func (m *Manager) runInetd(a *app, p *inetdProg, proc Process, spec *appfile.Spec) {
	defer close(p.done)
	select {
	case <-proc.Done():
	case <-p.stop:
	}
	sig, grace := stopSettings(spec)
	stopErr := proc.Stop(sig, grace)
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(a.inetd, p)
	reason := p.reason
	if !p.stopReq {
		reason = "exited"
	}
	if stopErr != nil {
		m.log.Warn("stopping app", "app", a.name, "pid", proc.Pid(), "err", stopErr)
	}
	m.log.Debug("app program ended", "app", a.name, "pid", proc.Pid(), "reason", reason, "status", exitStatus(proc))
	if m.cfg.Events != nil {
		m.cfg.Events.AppStopped(a.name, reason)
	}
}

// stopInetdLocked asks every program of a to stop.
func (m *Manager) stopInetdLocked(a *app, reason string) {
	for p := range a.inetd {
		p.requestStop(reason)
	}
}
