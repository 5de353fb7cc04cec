package lifecycle

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// An app's needs (needs: in its file) are apps that must be ready before
// its program starts and stay up while it runs. Each live instance holds
// one reference on every app it needs, from its launch until its process is
// gone; an app with references is never stopped for idleness, and once the
// last reference goes its idle countdown starts afresh. A stop of a needed
// app (manual, memory) stops the apps that hold it first, and shutdown
// stops an app only once nothing holds it. App files with needs that form a
// cycle are refused (appfile), so a chain of references always ends.

// holdNeedsLocked takes in's references on the apps its spec needs. A need
// that is not configured takes none: awaitNeeds fails the start.
func (m *Manager) holdNeedsLocked(in *instance) {
	for _, name := range in.spec.Needs {
		b := m.apps[name]
		if b == nil || b.removed {
			continue
		}
		b.neededRefs++
		in.needs = append(in.needs, b)
		m.disarmIdleLocked(b)
	}
}

// releaseNeedsLocked drops in's references. A needed app left without any
// counts the dependent's end as its last activity, so that it then runs
// its own idle_timeout; at shutdown it is stopped now, after its dependents.
func (m *Manager) releaseNeedsLocked(in *instance) {
	needs := in.needs
	in.needs = nil
	for _, b := range needs {
		b.neededRefs--
		if b.neededRefs > 0 {
			continue
		}
		if m.closed {
			if b.state == Starting || b.state == Ready || b.state == Frozen {
				m.stopRunningLocked(b, "shutdown")
			}
			continue
		}
		now := time.Now()
		b.lastActivity = now
		for _, bin := range b.insts {
			bin.lastActivity = now
		}
		m.armIdleLocked(b)
	}
}

// awaitNeeds starts the apps in's spec needs (all at once) and waits until
// each is ready, within the app's start_timeout counted from now. A need
// that fails, backs off or is not configured fails the start.
func (m *Manager) awaitNeeds(a *app, in *instance) error {
	if len(in.spec.Needs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(in.ctx, startTimeout(in.spec))
	defer cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, name := range in.spec.Needs {
		if b := m.apps[name]; b != nil && !b.removed && b.state == Stopped && !b.over.Disabled && !m.closed {
			m.log.Info("starting app: needed", "app", name, "by", a.name)
			m.beginStartLocked(b, "needed")
		}
	}
	for _, name := range in.spec.Needs {
		if _, _, err := m.waitReadyLocked(ctx, name, "needed", false, nil); err != nil {
			return fmt.Errorf("needed app %q: %w", name, err)
		}
	}
	return nil
}

// dependentsLocked returns the apps whose live instances hold b, sorted by
// name.
func (m *Manager) dependentsLocked(b *app) []string {
	var out []string
	for _, x := range m.apps {
		if x.removed || x == b {
			continue
		}
		for _, in := range x.insts {
			if slices.Contains(in.needs, b) {
				out = append(out, x.name)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// stopDependents stops, before app name itself stops, the apps that hold
// it (and theirs, recursively), for the same reason.
func (m *Manager) stopDependents(ctx context.Context, name, reason string) error {
	m.mu.Lock()
	var deps []string
	if b := m.apps[name]; b != nil && b.neededRefs > 0 {
		deps = m.dependentsLocked(b)
	}
	m.mu.Unlock()
	for _, d := range deps {
		m.log.Info("stopping app first: it needs an app being stopped", "app", d, "needs", name, "reason", reason)
		if err := m.Stop(ctx, d, reason); err != nil {
			return err
		}
	}
	return nil
}
