package lifecycle

import (
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// Timers are armed only while they can fire: the idle timer while a ready
// app has an instance with no open lease that may stop (on-demand apps down
// to none, scaled apps down to scale.min), the backoff timer while an app
// is failed or holds off adding instances. A timer that fires re-checks
// everything under the lock, so a stale firing (a lease or a stop arrived
// while it waited for the lock) does nothing.

// idleDeadline is when a ready instance with no lease may be stopped:
// idle_timeout after its last activity or after the app's keep window
// ends, whichever is later. A scheduled wake's keep is time the app is up
// whatever its traffic, so the idle countdown only starts once it is over:
// an app woken with no connection runs keep + idle_timeout.
func idleDeadline(a *app, in *instance) time.Time {
	from := in.lastActivity
	if a.keepUntil.After(from) {
		from = a.keepUntil
	}
	return from.Add(idleTimeout(a.spec))
}

// nextIdle returns the earliest idle deadline of a's instances that may stop
// for idleness, and false when none may.
func nextIdle(a *app) (time.Time, bool) {
	var next time.Time
	if a.state != Ready {
		return next, false
	}
	active := 0
	for _, in := range a.insts {
		if in.stopReq {
			continue
		}
		active++
		if in.readyAt.IsZero() || in.conns > 0 {
			continue
		}
		if d := idleDeadline(a, in); next.IsZero() || d.Before(next) {
			next = d
		}
	}
	return next, !next.IsZero() && active > minInstances(a.spec)
}

// armIdleLocked (re)arms a's idle timer for its earliest idle deadline, or
// disarms it when no instance may stop for idleness.
func (m *Manager) armIdleLocked(a *app) {
	next, ok := nextIdle(a)
	if !ok {
		m.disarmIdleLocked(a)
		return
	}
	d := time.Until(next)
	if a.idleTimer == nil {
		a.idleTimer = time.AfterFunc(d, func() { m.idleFired(a) })
		return
	}
	a.idleTimer.Reset(d)
}

// disarmIdleLocked stops a's idle timer.
func (m *Manager) disarmIdleLocked(a *app) {
	if a.idleTimer != nil {
		a.idleTimer.Stop()
	}
}

// idleFired stops the instances of a that are still idle (ready, no lease,
// past their deadline), highest index first, down to the app's minimum: for
// an on-demand app without scale.min that is none, and the idle stop of
// the last instance stops the app. Checked under the lock that Wake takes
// to lease, so an idle stop and a new lease never race: if the lease came
// first the stop is abandoned, otherwise the lease goes to another
// instance or sees stopping and waits for a fresh start.
func (m *Manager) idleFired(a *app) {
	if m.handoffBusy(a) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.apps[a.name] != a || a.state != Ready {
		return
	}
	now := time.Now()
	active, floor := a.active(), minInstances(a.spec)
	var next time.Time
	for i := len(a.insts) - 1; i >= 0 && active > floor; i-- {
		in := a.insts[i]
		if !in.ready() || in.conns > 0 {
			continue
		}
		if d := idleDeadline(a, in); d.After(now) {
			if next.IsZero() || d.Before(next) {
				next = d
			}
			continue
		}
		active--
		if active == 0 {
			m.stopAllLocked(a, "idle")
			return
		}
		m.retireLocked(a, in, "idle")
	}
	if !next.IsZero() && active > floor {
		a.idleTimer.Reset(time.Until(next))
	}
}

// armBackoffLocked arms a's backoff timer to fire after d.
func (m *Manager) armBackoffLocked(a *app, d time.Duration) {
	if a.backoffTimer == nil {
		a.backoffTimer = time.AfterFunc(d, func() { m.backoffFired(a) })
		return
	}
	a.backoffTimer.Reset(d)
}

// disarmBackoffLocked stops a's backoff timer.
func (m *Manager) disarmBackoffLocked(a *app) {
	if a.backoffTimer != nil {
		a.backoffTimer.Stop()
	}
}

// backoffFired ends a's backoff: always apps start again, others become
// stopped and start at the next wake.
func (m *Manager) backoffFired(a *app) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.apps[a.name] != a || (a.state != Failed && a.state != Ready) {
		return
	}
	if left := time.Until(a.backoffUntil); left > 0 {
		a.backoffTimer.Reset(left)
		return
	}
	if a.state == Ready {
		// An added instance failed: top the app up to its minimum again.
		m.ensureMinLocked(a)
		return
	}
	if mode(a.spec) == appfile.Always {
		a.restarts++
		m.beginStartLocked(a, "crash")
		return
	}
	a.setState(Stopped)
}
