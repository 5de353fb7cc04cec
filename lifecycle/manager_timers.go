package lifecycle

import (
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// Timers are armed only while they can fire: the idle timer while an
// on-demand app is ready with no open lease, the backoff timer while an app
// is failed. A timer that fires re-checks everything under the lock, so a
// stale firing (a lease or a stop arrived while it waited for the lock)
// does nothing.

// idleDeadline is when a ready app with no lease may be stopped: idle_timeout
// after its last activity, and not before its keep window ends.
func idleDeadline(a *app) time.Time {
	d := a.lastActivity.Add(idleTimeout(a.spec))
	if a.keepUntil.After(d) {
		d = a.keepUntil
	}
	return d
}

// armIdle (re)arms a's idle timer for its idle deadline. Caller holds m.mu.
func (m *Manager) armIdle(a *app) {
	d := time.Until(idleDeadline(a))
	if a.idleTimer == nil {
		a.idleTimer = time.AfterFunc(d, func() { m.idleFired(a) })
		return
	}
	a.idleTimer.Reset(d)
}

// disarmIdle stops a's idle timer. Caller holds m.mu.
func (m *Manager) disarmIdle(a *app) {
	if a.idleTimer != nil {
		a.idleTimer.Stop()
	}
}

// idleFired stops a if it is still idle: ready, on-demand, no lease, past its
// deadline. Checked under the lock that Wake takes to lease, so an idle stop
// and a new lease never race: if the lease came first the stop is abandoned,
// otherwise the lease sees stopping and waits for a fresh start.
func (m *Manager) idleFired(a *app) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.apps[a.name] != a || a.state != Ready || a.conns > 0 || mode(a.spec) != appfile.OnDemand {
		return
	}
	if left := time.Until(idleDeadline(a)); left > 0 {
		a.idleTimer.Reset(left)
		return
	}
	a.inst.requestStop("idle")
	a.setState(Stopping)
}

// armBackoff arms a's backoff timer to fire after d. Caller holds m.mu.
func (m *Manager) armBackoff(a *app, d time.Duration) {
	if a.backoffTimer == nil {
		a.backoffTimer = time.AfterFunc(d, func() { m.backoffFired(a) })
		return
	}
	a.backoffTimer.Reset(d)
}

// disarmBackoff stops a's backoff timer. Caller holds m.mu.
func (m *Manager) disarmBackoff(a *app) {
	if a.backoffTimer != nil {
		a.backoffTimer.Stop()
	}
}

// backoffFired ends a's backoff: always apps start again, others become
// stopped and start at the next wake.
func (m *Manager) backoffFired(a *app) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.apps[a.name] != a || a.state != Failed {
		return
	}
	if left := time.Until(a.backoffUntil); left > 0 {
		a.backoffTimer.Reset(left)
		return
	}
	if mode(a.spec) == appfile.Always {
		a.restarts++
		m.beginStart(a, "crash")
		return
	}
	a.setState(Stopped)
}
