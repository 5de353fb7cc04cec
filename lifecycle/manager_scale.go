package lifecycle

import "time"

// Scaling: an app whose file sets scale.max > 1 runs up to that many
// instances. One more starts when a connection arrives and every ready
// instance already holds target_connections leases; instances with no lease
// for idle_timeout stop, down to scale.min. Everything here runs under
// m.mu, like every other state change.

// maybeScaleUpLocked starts one more instance of a ready app when every ready
// instance is at its target and the app may grow: below scale.max, no
// instance starting, no backoff after a failed added instance. The caller
// (Wake) leases a ready instance meanwhile: nobody waits for the new one.
func (m *Manager) maybeScaleUpLocked(a *app) {
	if len(a.insts) >= a.spec.Scale.Instances() || a.state != Ready || m.closed {
		return
	}
	target := targetConnections(a.spec)
	for _, in := range a.insts {
		if in.starting() || (in.ready() && in.conns < target) {
			return
		}
	}
	if time.Now().Before(a.backoffUntil) {
		return
	}
	m.launchLocked(a, "scale")
}

// ensureMinLocked starts one more instance of a ready app while fewer than
// its minimum run (one at a time: the next starts when this one is ready).
func (m *Manager) ensureMinLocked(a *app) {
	if m.closed || a.removed || a.state != Ready || a.active() >= minInstances(a.spec) ||
		len(a.insts) >= a.spec.Scale.Instances() || a.startingInstance() != nil ||
		time.Now().Before(a.backoffUntil) {
		return
	}
	m.launchLocked(a, "min")
}

// trimToMaxLocked stops the highest instances of a ready app beyond scale.max
// (after a reload lowered it). Their open connections end with them.
func (m *Manager) trimToMaxLocked(a *app) {
	for i := len(a.insts) - 1; i >= 0 && a.active() > a.spec.Scale.Instances(); i-- {
		if in := a.insts[i]; !in.stopReq {
			m.retireLocked(a, in, "scale down")
		}
	}
}

// retireLocked stops in alone while the app runs on with its other instances.
func (m *Manager) retireLocked(a *app, in *instance, reason string) {
	in.requestStop(reason)
	m.settleLocked(a)
}

// settleLocked sets a running app's state from its instances after one left
// the rotation: ready while one is ready, starting while one starts. Waiters
// are woken either way, so that none keeps looking at a dead instance.
func (m *Manager) settleLocked(a *app) {
	switch {
	case a.pick() != nil:
		a.setState(Ready)
	case a.startingInstance() != nil:
		a.setState(Starting)
	default:
		a.broadcast()
	}
}

// stopAllLocked asks every instance of a to stop and moves the app to
// stopping.
func (m *Manager) stopAllLocked(a *app, reason string) {
	for _, in := range a.insts {
		in.requestStop(reason)
	}
	a.setState(Stopping)
}

// dones returns the done channels of a's instances, to wait for them all.
func (a *app) dones() []chan struct{} {
	out := make([]chan struct{}, 0, len(a.insts)+len(a.inetd))
	for _, in := range a.insts {
		out = append(out, in.done)
	}
	for p := range a.inetd {
		out = append(out, p.done)
	}
	return out
}
