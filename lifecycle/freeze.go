package lifecycle

import (
	"context"
	"errors"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// idle_action: freeze. Instead of stopping an idle app, every instance's
// processes are suspended (Freezer): the app is frozen, holds its memory
// and costs no CPU. What would wake a stopped app thaws a frozen one (a
// connection, a cron wake, dynapm start), and the connection is served by
// the same process once thawed; what would stop a running app stops a
// frozen one, after thawing it so that its stop signal is handled. The
// freeze and thaw calls run outside the lock, one at a time per instance
// (instance.freezeMu), each applying what the instance wants at that
// moment (instance.frozen), so that a thaw asked for during a freeze
// follows it, cutting short the freeze's wait for the kernel's report.
// A connection thaws an instance that can be resumed without waiting
// (QuickThawer) itself, on the thread that accepted it, the lock released
// around the call (thawNowLocked).

// freezeTimeout returns spec's freeze_timeout, 0 for none.
func freezeTimeout(spec *appfile.Spec) time.Duration { return spec.FreezeTimeout }

// canFreezeLocked reports whether a's idle stop is to be a freeze: its
// file asks for it and every instance left can be frozen.
func (m *Manager) canFreezeLocked(a *app) bool {
	if a.spec.IdleAction != appfile.IdleFreeze || m.closed {
		return false
	}
	n := 0
	for _, in := range a.insts {
		if in.stopReq {
			continue
		}
		if _, ok := in.proc.(Freezer); !ok || !in.ready() {
			return false
		}
		n++
	}
	return n > 0
}

// freezeLocked moves a, ready and idle, to frozen and has every instance
// frozen.
func (m *Manager) freezeLocked(a *app) {
	m.disarmIdleLocked(a)
	now := time.Now()
	a.frozenAt = now
	for _, in := range a.insts {
		if !in.stopReq {
			in.frozen = true
			in.dropSpare()
			go m.applyFreeze(context.Background(), in)
		}
	}
	a.setState(Frozen)
	m.log.Info("app frozen", "app", a.name, "reason", "idle")
	m.armFreezeTimeoutLocked(a)
}

// armFreezeTimeoutLocked arms a's freeze_timeout for when it ends, counted
// from when a froze; a reload may have changed it since.
func (m *Manager) armFreezeTimeoutLocked(a *app) {
	d := freezeTimeout(a.spec)
	if d <= 0 {
		if a.freezeTimer != nil {
			a.freezeTimer.Stop()
		}
		return
	}
	left := time.Until(a.frozenAt.Add(d))
	if a.freezeTimer == nil {
		a.freezeTimer = time.AfterFunc(left, func() { m.freezeTimeoutFired(a) })
		return
	}
	a.freezeTimer.Reset(left)
}

// thawLocked has every instance of a, frozen, thawed in goroutines of
// their own; the app becomes ready once they all are (applyFreeze).
// reason goes to the log.
func (m *Manager) thawLocked(a *app, reason string) {
	for _, in := range m.beginThawLocked(a, reason) {
		go m.applyFreeze(context.Background(), in)
	}
}

// beginThawLocked marks a as thawing and returns the instances for the
// caller to thaw with applyFreeze; none when a thaw is under way already.
// A connection thaws them itself (waitReadyLocked): no goroutine to start
// and none to wake on the way of the first byte.
func (m *Manager) beginThawLocked(a *app, reason string) []*instance {
	if a.thawing {
		return nil
	}
	a.thawing = true
	a.thawReason = reason
	var ins []*instance
	for _, in := range a.insts {
		if in.frozen {
			in.thawLocked()
			ins = append(ins, in)
		}
	}
	m.thawedLocked(a) // when nothing was frozen yet
	return ins
}

// thawNowLocked thaws app name, frozen, when every frozen instance can be
// resumed at once (QuickThawer) and no Freeze or Thaw call of it is under
// way, and returns the app, ready, with the instance to lease: a
// connection to a frozen app is then served on the thread that accepted
// it, with no goroutine to start nor lock to hand over. A nil instance
// leaves the thaw to Wake; when a ThawNow failed, the app is thawing
// already, those resumed recorded as running, so that its state holds
// even if the connection's client goes away. m.mu is released around
// the ThawNow calls; the app reads thawing meanwhile.
func (m *Manager) thawNowLocked(name string) (*app, *instance) {
	a := m.apps[name]
	if m.closed || a == nil || a.removed || a.over.Disabled || a.state != Frozen || a.thawing {
		return nil, nil
	}
	var held, resume []*instance
	defer func() {
		for _, in := range held {
			in.freezeMu.Unlock()
		}
	}()
	for _, in := range a.insts {
		if !in.frozen {
			continue
		}
		if _, ok := in.proc.(QuickThawer); !ok || !in.freezeMu.TryLock() {
			return nil, nil
		}
		held = append(held, in)
	}
	for _, in := range held {
		in.thawLocked()
		// Not applied: the freeze's goroutine has yet to run, and
		// will find nothing to do.
		if in.freezeApplied {
			resume = append(resume, in)
		}
	}
	a.thawing, a.thawReason = true, "connection"
	var err error
	n := 0
	if len(resume) > 0 {
		// A write to cgroup.freeze waits for the kernel's cgroup_mutex,
		// held across cgroup creation, migration and removal: measured
		// p99 3-5 ms, max 9-17 ms under such churn (p99 0.07 ms quiet),
		// so every other caller of m.mu must not wait for it; this
		// thread serves the connection the thaw is for.
		m.mu.Unlock()
		for _, in := range resume {
			if err = in.proc.(QuickThawer).ThawNow(); err != nil {
				break
			}
			n++
		}
		m.mu.Lock()
	}
	for _, in := range resume[:n] {
		in.freezeApplied = false
	}
	// Stopped, reloaded or removed meanwhile: the stop's thaw
	// (thawForStop) does what is left, and Wake waits for the app.
	thawing := a.state == Frozen && a.thawing && m.apps[name] == a
	if err != nil {
		m.log.Warn("thawing app at once failed, thawing it in the background", "app", a.name, "err", err)
		if thawing {
			for _, in := range resume[n:] {
				go m.applyFreeze(context.Background(), in)
			}
		}
		return nil, nil
	}
	if !thawing {
		return nil, nil
	}
	m.thawedLocked(a) // ready: nothing is frozen now
	return a, a.pick()
}

// applyFreeze makes in's processes frozen or running, as in.frozen says
// when it gets its turn, and again until they are as it says (a thaw
// asked for during a freeze follows it). ctx bounds each call, as does
// freezeCallTimeout.
func (m *Manager) applyFreeze(ctx context.Context, in *instance) {
	m.applyFreezeFor(ctx, in, false)
}

// applyFreezeFor is applyFreeze; forStop: the instance is being stopped,
// and a failure only goes to the log. A failure otherwise stops the app:
// a frozen app nobody can thaw must not hold connections.
func (m *Manager) applyFreezeFor(parent context.Context, in *instance, forStop bool) {
	in.freezeMu.Lock()
	defer in.freezeMu.Unlock()
	for {
		m.mu.Lock()
		want := in.frozen
		fz, _ := in.proc.(Freezer)
		if want == in.freezeApplied || fz == nil {
			m.mu.Unlock()
			return
		}
		// Not the instance's context: a stop cancels it, and the thaw
		// before the stop must still run.
		ctx, cancel := context.WithTimeout(parent, freezeCallTimeout)
		if want {
			// Maybe frozen from the call on: nothing may take the app
			// for running until a thaw has returned.
			in.freezeApplied = true
			if _, quick := fz.(QuickThawer); quick {
				in.cancelFreeze = cancel
			}
		}
		m.mu.Unlock()
		var err error
		if want {
			err = fz.Freeze(ctx)
		} else {
			err = fz.Thaw(ctx)
		}
		cancel()
		m.mu.Lock()
		in.cancelFreeze = nil
		a := in.app
		switch {
		case want && err != nil && !in.frozen && parent.Err() == nil && errors.Is(err, context.Canceled):
			// A thaw cut the freeze's wait short: thaw it, maybe
			// frozen, on the next turn.
		case err != nil && forStop:
			m.log.Warn("thawing app before its stop failed", "app", a.name, "err", err)
			m.mu.Unlock()
			return
		case err != nil:
			m.log.Warn("freezing app failed, stopping it", "app", a.name, "freeze", want, "err", err)
			if a.state == Frozen && m.apps[a.name] == a {
				m.stopRunningLocked(a, "idle")
			}
			m.mu.Unlock()
			return
		case !want:
			in.freezeApplied = false
			m.thawedLocked(a)
		}
		m.mu.Unlock()
	}
}

// thawedLocked moves a, thawing, to ready once no instance is frozen.
func (m *Manager) thawedLocked(a *app) {
	if a.state != Frozen || !a.thawing {
		return
	}
	for _, in := range a.insts {
		if in.frozen || in.freezeApplied {
			return
		}
	}
	a.thawing = false
	if a.freezeTimer != nil {
		a.freezeTimer.Stop()
	}
	now := time.Now()
	for _, in := range a.insts {
		in.lastActivity = now
	}
	a.lastActivity = now
	m.log.Info("app thawed", "app", a.name, "reason", a.thawReason, "frozen", now.Sub(a.frozenAt))
	a.setState(Ready)
	m.armIdleLocked(a)
}

// stopRunningLocked stops a, starting, ready or frozen; a frozen app's
// instances are thawed first by their goroutines (thawForStop), so that
// the stop signal is handled.
func (m *Manager) stopRunningLocked(a *app, reason string) {
	a.thawing = false
	if a.freezeTimer != nil {
		a.freezeTimer.Stop()
	}
	m.stopAllLocked(a, reason)
}

// thawForStop thaws in, asked to stop, if its processes are frozen: a
// frozen process would hold its stop signal until killed. Called by the
// instance's goroutine before it stops the process.
func (m *Manager) thawForStop(in *instance) {
	m.mu.Lock()
	in.thawLocked()
	m.mu.Unlock()
	m.applyFreezeFor(context.Background(), in, true)
}

// thawLocked marks in as wanted running, cutting short the wait of a
// Freeze call under way (cancelFreeze).
func (in *instance) thawLocked() {
	in.frozen = false
	if in.cancelFreeze != nil {
		in.cancelFreeze()
		in.cancelFreeze = nil
	}
}

// freezeTimeoutFired stops a if it is still frozen freeze_timeout after
// it froze.
func (m *Manager) freezeTimeoutFired(a *app) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.apps[a.name] != a || a.state != Frozen || a.thawing {
		return
	}
	d := freezeTimeout(a.spec)
	if d <= 0 {
		return
	}
	if left := time.Until(a.frozenAt.Add(d)); left > 0 {
		a.freezeTimer.Reset(left)
		return
	}
	m.log.Info("app frozen for freeze_timeout, stopping it", "app", a.name, "freeze_timeout", d)
	m.stopRunningLocked(a, "idle")
}

// freezeCallTimeout bounds one Freeze or Thaw call (a container engine
// may hang).
const freezeCallTimeout = 30 * time.Second
