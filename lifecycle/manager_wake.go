package lifecycle

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// refusedLogEvery bounds the log lines about refused callers to one per
// app per interval while a flood lasts; a summary follows the start.
const refusedLogEvery = time.Second

// Wake returns the upstream of a ready process of app, starting the app
// first if it is stopped (reason "connection"). While the app starts, or
// while it stops and then starts afresh, Wake waits, up to the app's
// start_timeout or until ctx ends. A scaled app's connection goes to the
// ready instance with the fewest open leases, and when every ready
// instance holds target_connections one more instance starts (the
// connection does not wait for it). On success the caller must call
// release once when its connection closes; the instance is not stopped for
// idleness while a lease is open. It satisfies l4.Waker.
func (m *Manager) Wake(ctx context.Context, name string) (netip.AddrPort, func(), error) {
	return m.WakeFor(ctx, name, "connection")
}

// WakeFor is Wake for a caller other than a connection: reason (a
// scheduled job's "cron") is the one a start it causes is logged and
// counted with.
func (m *Manager) WakeFor(ctx context.Context, name, reason string) (netip.AddrPort, func(), error) {
	return m.wakeNoConn(ctx, name, reason, nil)
}

// WakeConn is Wake, which also hands over the readiness probe's connection
// to the upstream when the app was started for the connections waiting
// and this is the first of them to lease it: a connected socket's
// descriptor the caller owns, or -1 (dial the upstream then). It satisfies
// l4.ConnWaker.
func (m *Manager) WakeConn(ctx context.Context, name string) (netip.AddrPort, int, func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.wakeLocked(ctx, name, "connection", nil)
}

// WakeEarly is Wake, which also calls early, once, with the upstream of
// the instance it waits for as soon as its program is spawned, before it
// is ready (not at all when the app is ready, or its program serves on a
// socket file or a handed-off socket): a UDP flow connects its socket
// there while the program starts rather than after. early runs on the
// caller's goroutine, without the Manager's lock; the upstream Wake
// returns may still differ (a start that failed and was retried). It
// satisfies l4.EarlyWaker.
func (m *Manager) WakeEarly(ctx context.Context, name string, early func(netip.AddrPort)) (netip.AddrPort, func(), error) {
	return m.wakeNoConn(ctx, name, "connection", early)
}

// wakeNoConn is wakeLocked for a caller that takes no probe
// connection: it is closed.
func (m *Manager) wakeNoConn(ctx context.Context, name, reason string, early func(netip.AddrPort)) (netip.AddrPort, func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	up, conn, release, err := m.wakeLocked(ctx, name, reason, early)
	if conn >= 0 {
		syscall.Close(conn)
	}
	return up, release, err
}

// wakeLocked waits until app name is ready, starting it for reason, and
// leases it; m.mu is released while waiting. early, when not nil, is told
// the upstream of the instance it waits for once spawned (WakeEarly).
func (m *Manager) wakeLocked(ctx context.Context, name, reason string, early func(netip.AddrPort)) (netip.AddrPort, int, func(), error) {
	a, in, err := m.waitReadyLocked(ctx, name, reason, true, early)
	if err != nil {
		m.dropUnclaimedLocked(name)
		return netip.AddrPort{}, -1, nil, fmt.Errorf("waking app %q: %w", name, err)
	}
	up, release := m.leaseLocked(a, in)
	conn := in.takeSpare()
	m.dropUnclaimedLocked(name)
	return up, conn, release, nil
}

// dropUnclaimedLocked closes the spare connections of app name's instances
// once no connection waits for it any more: nobody is left to take them.
func (m *Manager) dropUnclaimedLocked(name string) {
	a := m.apps[name]
	if a == nil || a.pending > 0 {
		return
	}
	for _, in := range a.insts {
		in.dropSpare()
	}
}

// TryWake is Wake for an app that is ready now, or frozen and can be
// thawed at once (thawNowLocked): it leases a ready backend without
// waiting, or reports false (the app is stopped, starting, stopping,
// failed or unknown) and leaves the app alone, so that the caller can
// wait in Wake without blocking whatever called TryWake; a frozen app
// whose quick thaw failed is left thawing.
func (m *Manager) TryWake(name string) (netip.AddrPort, func(), bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, in := m.readyNowLocked(name)
	if in == nil {
		a, in = m.thawNowLocked(name)
	}
	if in == nil {
		return netip.AddrPort{}, nil, false
	}
	up, release := m.leaseLocked(a, in)
	return up, release, true
}

// TryWakePassive is TryWake for a connection that may not wake the app
// (wake_from): its lease counts as an open connection in status, but
// neither as activity nor against the idle stop, and never adds an
// instance. It satisfies l4.PassiveWaker.
func (m *Manager) TryWakePassive(name string) (netip.AddrPort, func(), bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, in := m.readyNowLocked(name)
	if in == nil {
		return netip.AddrPort{}, nil, false
	}
	in.passive++
	a.conns++
	var once sync.Once
	release := func() {
		once.Do(func() {
			m.mu.Lock()
			in.passive--
			in.app.conns--
			m.mu.Unlock()
		})
	}
	return in.upstream, release, true
}

// readyNowLocked returns app name and the instance a connection should
// go to when the app is ready now; a nil instance otherwise.
func (m *Manager) readyNowLocked(name string) (*app, *instance) {
	a := m.apps[name]
	if m.closed || a == nil || a.removed || a.state != Ready {
		return nil, nil
	}
	return a, a.pick()
}

// leaseLocked counts one connection on in, an instance of a that is ready,
// and returns its upstream and the release to call when the connection ends.
func (m *Manager) leaseLocked(a *app, in *instance) (netip.AddrPort, func()) {
	if a.spec.Scale.Max > 1 {
		m.maybeScaleUpLocked(a)
	}
	now := time.Now()
	in.conns++
	a.conns++
	in.lastActivity, a.lastActivity = now, now
	if len(a.insts) == 1 && connsKeepUp(a.spec) {
		m.disarmIdleLocked(a)
	} // else other instances may still be idle, or quiet connections do
	// not count: a stale firing sees the lease and the activity
	var once sync.Once
	release := func() { once.Do(func() { m.release(in) }) }
	return in.upstream, release
}

// release ends one lease of in.
func (m *Manager) release(in *instance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := in.app
	in.conns--
	a.conns--
	now := time.Now()
	in.lastActivity, a.lastActivity = now, now
	if in.conns == 0 && a.state == Ready && !m.closed && in.ready() {
		m.armIdleLocked(a)
	}
}

// Traffic records that bytes moved just now on connections leased to the
// instance of app at upstream: with idle_when: traffic that is what keeps
// it up. The idle timer, armed for the earlier deadline, finds the later
// one when it fires and waits on. It satisfies l4.TrafficWaker.
func (m *Manager) Traffic(name string, upstream netip.AddrPort) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.apps[name]
	if a == nil {
		return
	}
	now := time.Now()
	for _, in := range a.insts {
		if in.upstream == upstream && in.ready() {
			in.lastActivity, a.lastActivity = now, now
			return
		}
	}
}

// Start starts app if it is not running and waits until it is ready or its
// start fails. reason ("connection", "cron", "manual", "boot") goes to the
// log. A manual start ignores the backoff of a failed app; others get
// ErrBackoff.
func (m *Manager) Start(ctx context.Context, name, reason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, _, err := m.waitReadyLocked(ctx, name, reason, false, nil); err != nil {
		return fmt.Errorf("starting app %q: %w", name, err)
	}
	return nil
}

// waitReadyLocked returns the app named name once it is ready, with the
// ready instance a new connection should go to, starting it when stopped and
// waiting while it starts or stops. m.mu is released while waiting and held
// again on return. held says the caller is a connection: it counts against
// max_pending. early, when not nil, is told the upstream of the instance
// waited for once its program is spawned (WakeEarly).
func (m *Manager) waitReadyLocked(ctx context.Context, name, reason string, held bool, early func(netip.AddrPort)) (*app, *instance, error) {
	var (
		timer   *time.Timer
		began   time.Time     // when the wait began
		limit   time.Duration // the start_timeout the timer was armed with
		counted *app          // the app whose pending count includes us
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
		if counted != nil {
			counted.pending--
			if counted.pending == 0 && counted.spec.Exclusive != "" {
				counted.broadcast() // awaitExclusive may stop it now
			}
		}
	}()
	for {
		if m.closed {
			return nil, nil, ErrShuttingDown
		}
		a := m.apps[name]
		if a == nil || a.removed {
			return nil, nil, ErrUnknownApp
		}
		if a.over.Disabled {
			return nil, nil, ErrDisabled
		}
		switch a.state {
		case Ready:
			if in := a.pick(); in != nil {
				return a, in, nil
			}
			// Every ready process exited, and their goroutines have yet
			// to say so: never hand out a dead upstream; wait for the
			// next state.
		case Failed:
			if reason != "manual" {
				return nil, nil, fmt.Errorf("%w (%s left; last error: %s)", ErrBackoff,
					time.Until(a.backoffUntil).Round(time.Millisecond), a.lastErr)
			}
			m.beginStartLocked(a, reason)
		case Stopped:
			m.beginStartLocked(a, reason)
		case Frozen:
			if ins := m.beginThawLocked(a, reason); len(ins) > 0 {
				// Thawed by this caller, within its start_timeout.
				tctx, cancel := context.WithTimeout(ctx, startTimeout(a.spec))
				m.mu.Unlock()
				for _, in := range ins {
					m.applyFreeze(tctx, in)
				}
				cancel()
				m.mu.Lock()
				continue
			}
		}
		// Starting, stopping or thawing: wait for the next change.
		if held && counted != a {
			if a.pending >= maxPending(a.spec) {
				m.refuseLocked(a)
				return nil, nil, ErrTooManyPending
			}
			if counted != nil {
				counted.pending--
			}
			a.pending++
			counted = a
		}
		var waitingOn *instance
		if a.state == Starting {
			waitingOn = a.startingInstance()
		}
		var chosen <-chan struct{} // nil: no upstream to tell early
		if early != nil && waitingOn != nil {
			if waitingOn.chosenClosed {
				tell := early
				early = nil
				up := waitingOn.upstream
				m.mu.Unlock()
				tell(up)
				m.mu.Lock()
				if waitingOn.startErr != nil {
					return nil, nil, waitingOn.startErr
				}
				continue // the start may have moved on meanwhile
			}
			chosen = waitingOn.chosen
		}
		if timer == nil {
			began, limit = time.Now(), startTimeout(a.spec)
			timer = time.NewTimer(limit)
		} else if st := startTimeout(a.spec); st != limit {
			// A reload changed start_timeout: it bounds this wait too,
			// counted from when the wait began.
			limit = st
			timer.Reset(time.Until(began.Add(limit)))
		}
		changed := a.changed
		m.mu.Unlock()
		select {
		case <-changed:
			m.mu.Lock()
		case <-chosen:
			m.mu.Lock()
		case <-ctx.Done():
			m.mu.Lock()
			return nil, nil, ctx.Err()
		case <-timer.C:
			m.mu.Lock()
			return nil, nil, fmt.Errorf("%w after %v", ErrStartTimeout, limit)
		}
		if waitingOn != nil && waitingOn.startErr != nil {
			return nil, nil, waitingOn.startErr
		}
	}
}

// refuseLocked counts a caller turned away by max_pending, logging at most
// once per refusedLogEvery.
func (m *Manager) refuseLocked(a *app) {
	a.refused++
	a.refusedTotal++
	if now := time.Now(); now.Sub(a.refusedLogged) >= refusedLogEvery {
		m.logRefusedLocked(a)
	}
}

// logRefusedLocked logs how many callers were refused since the last such
// line.
func (m *Manager) logRefusedLocked(a *app) {
	if a.refused == 0 {
		return
	}
	m.logRefused(a.name, a.refused, maxPending(a.spec))
	a.refused = 0
	a.refusedLogged = time.Now()
}

// logRefused logs that refused callers of app were turned away by
// max_pending (limit) since the last such line.
func (m *Manager) logRefused(app string, refused, limit int) {
	m.log.Warn("refused connections: too many pending", "app", app, "refused", refused, "max_pending", limit)
}
