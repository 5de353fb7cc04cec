package lifecycle

import (
	"context"
	"fmt"
	"time"
)

// Stop stops app (its whole process group: stop_signal, then SIGKILL after
// stop_timeout) and waits until the process is gone or ctx ends. reason
// ("manual", "idle", "memory"...) goes to the log. A stopped or failed app is
// left stopped. Connections that arrive meanwhile wait and start it afresh.
//
// The apps that need app and run are stopped first, for the same reason.
func (m *Manager) Stop(ctx context.Context, name, reason string) error {
	_, err := m.StopApp(ctx, name, reason)
	return err
}

// StopOutcome says how a stop went.
type StopOutcome struct {
	// WasRunning: a process ran (or was starting or stopping) when the
	// stop was asked for.
	WasRunning bool
	// Killed: a process did not end at its stop signal and was killed
	// after stop_timeout.
	Killed bool
}

// StopApp is Stop, saying how the stop went.
func (m *Manager) StopApp(ctx context.Context, name, reason string) (StopOutcome, error) {
	if err := m.stopDependents(ctx, name, reason); err != nil {
		return StopOutcome{}, fmt.Errorf("stopping app %q: %w", name, err)
	}
	m.mu.Lock()
	a := m.apps[name]
	if a == nil || a.removed {
		m.mu.Unlock()
		return StopOutcome{}, fmt.Errorf("stopping app %q: %w", name, ErrUnknownApp)
	}
	a.restartAfterStop = false
	a.keepUntil = time.Time{}
	m.stopInetdLocked(a, reason)
	var out StopOutcome
	switch a.state {
	case Stopped:
		if len(a.inetd) > 0 {
			break // wait for its programs
		}
		m.mu.Unlock()
		return out, nil
	case Failed:
		m.disarmBackoffLocked(a)
		a.setState(Stopped)
		m.mu.Unlock()
		return out, nil
	case Starting, Ready:
		m.disarmIdleLocked(a)
		m.stopAllLocked(a, reason)
	case Frozen:
		m.stopRunningLocked(a, reason)
	}
	out.WasRunning = true
	a.stopKilled = false
	dones := a.dones()
	m.mu.Unlock()
	for _, done := range dones {
		select {
		case <-done:
		case <-ctx.Done():
			return out, fmt.Errorf("stopping app %q: %w", name, ctx.Err())
		}
	}
	m.mu.Lock()
	out.Killed = a.stopKilled
	m.mu.Unlock()
	return out, nil
}

// Restart stops app if it runs and starts it again, waiting until it is
// ready. Connections arriving meanwhile wait for the new process.
func (m *Manager) Restart(ctx context.Context, name string) error {
	if err := m.restart(ctx, name, "restart", "manual"); err != nil {
		return fmt.Errorf("restarting app %q: %w", name, err)
	}
	return nil
}

// restart is Restart with the reasons for the log: why the old process
// stops and why the new one starts.
func (m *Manager) restart(ctx context.Context, name, stopReason, startReason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.apps[name]
	if a == nil || a.removed {
		return ErrUnknownApp
	}
	switch a.state {
	case Starting, Ready, Frozen:
		m.disarmIdleLocked(a)
		m.stopRunningLocked(a, stopReason)
		fallthrough
	case Stopping:
		a.restartAfterStop, a.restartReason = true, startReason
	}
	_, _, err := m.waitReadyLocked(ctx, name, startReason, false, nil)
	return err
}

// KeepUp keeps app running until at least until (a scheduled wake's keep
// window): it starts the app if it is stopped, without waiting for it to be
// ready, and its idle countdown starts at until at the earliest: with no
// connection it stops idle_timeout after until. A later window extends the
// one in force, an earlier one leaves it. A failed app stays in backoff
// (ErrBackoff).
func (m *Manager) KeepUp(name string, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("keeping app %q up: %w", name, ErrShuttingDown)
	}
	a := m.apps[name]
	if a == nil || a.removed {
		return fmt.Errorf("keeping app %q up: %w", name, ErrUnknownApp)
	}
	if a.over.Disabled {
		return fmt.Errorf("keeping app %q up: %w", name, ErrDisabled)
	}
	if until.After(a.keepUntil) {
		a.keepUntil = until
	}
	switch a.state {
	case Stopped:
		m.beginStartLocked(a, "cron")
	case Stopping:
		// Start again once the old process is gone.
		if !a.restartAfterStop {
			a.restartAfterStop, a.restartReason = true, "cron"
		}
	case Failed:
		return fmt.Errorf("keeping app %q up: %w", name, ErrBackoff)
	case Frozen:
		m.thawLocked(a, "cron") // its idle timer, armed once thawed, sees the window
	case Ready:
		if a.idleTimer != nil {
			m.armIdleLocked(a) // later deadline
		}
	}
	return nil
}

// Shutdown stops every app in parallel and returns once all their processes
// are gone, or when ctx ends. An app that running apps need is stopped once
// they are gone (releaseNeedsLocked), so dependents stop first. Callers waiting in Wake or Start get
// ErrShuttingDown at once; no app starts again afterwards.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.stopAdopting()
	m.adopting.Wait()
	m.mu.Lock()
	m.closed = true
	var running []chan struct{}
	for _, a := range m.apps {
		m.disarmIdleLocked(a)
		m.disarmBackoffLocked(a)
		a.restartAfterStop = false
		m.stopInetdLocked(a, "shutdown")
		switch a.state {
		case Starting, Ready, Frozen:
			if a.neededRefs == 0 {
				m.stopRunningLocked(a, "shutdown")
			}
		case Failed:
			a.setState(Stopped)
		default:
			a.broadcast() // waiters see closed
		}
		running = append(running, a.dones()...)
	}
	m.mu.Unlock()
	for _, done := range running {
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("shutting down apps: %w", ctx.Err())
		}
	}
	// The hooks of the last stops (after_stop), each within its
	// hook_timeout.
	hooksDone := make(chan struct{})
	go func() { m.hooks.Wait(); close(hooksDone) }()
	select {
	case <-hooksDone:
	case <-ctx.Done():
		return fmt.Errorf("shutting down apps: waiting for hooks: %w", ctx.Err())
	}
	return nil
}
