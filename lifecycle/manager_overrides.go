package lifecycle

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// Overrides are what an operator said of an app by hand, over what its
// file says: pinned (kept up whatever its idle time, until a time or until
// unpinned) or disabled (stopped, wakes refused until enabled). They are
// kept by name, so they outlive a removal and re-adding of the app file
// and, saved by the daemon, a restart.

// Override is one app's overrides, as saved and restored.
type Override struct {
	App string
	// Pinned keeps the app up; PinnedUntil ends the pin (zero: until
	// Unpin).
	Pinned      bool
	PinnedUntil time.Time
	// Disabled stops the app and refuses its wakes.
	Disabled bool
}

// pinnedAt reports whether o keeps its app up at now.
func (o Override) pinnedAt(now time.Time) bool {
	return o.Pinned && (o.PinnedUntil.IsZero() || now.Before(o.PinnedUntil))
}

// pinned reports whether a is pinned now.
func (a *app) pinned(now time.Time) bool { return a.over.pinnedAt(now) }

// SetOverrides restores saved overrides, before the first Apply: a
// disabled persistent app then does not start at boot. Expired pins are
// dropped.
func (m *Manager) SetOverrides(list []Override) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for _, o := range list {
		if o.Pinned && !o.pinnedAt(now) {
			o.Pinned, o.PinnedUntil = false, time.Time{}
		}
		if !o.Pinned && !o.Disabled {
			continue
		}
		m.overrides[o.App] = o
		if a := m.apps[o.App]; a != nil {
			a.over = o
		}
	}
}

// Overrides returns the overrides in force, sorted by app, for saving.
func (m *Manager) Overrides() []Override {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	out := make([]Override, 0, len(m.overrides))
	for _, o := range m.overrides {
		if o.Pinned && !o.pinnedAt(now) {
			o.Pinned, o.PinnedUntil = false, time.Time{}
		}
		if o.Pinned || o.Disabled {
			out = append(out, o)
		}
	}
	slices.SortFunc(out, func(x, y Override) int { return strings.Compare(x.App, y.App) })
	return out
}

// setOverrideLocked records o for its app, known or not.
func (m *Manager) setOverrideLocked(o Override) {
	if !o.Pinned && !o.Disabled {
		delete(m.overrides, o.App)
	} else {
		m.overrides[o.App] = o
	}
	if a := m.apps[o.App]; a != nil {
		a.over = o
	}
}

// Pin keeps app up whatever its idle time until until (zero: until Unpin),
// starting it if needed and waiting until it is ready. A pinned app that
// crashes is started again, as an always app; a disabled app cannot be
// pinned (ErrDisabled). A later Pin replaces the earlier one.
func (m *Manager) Pin(ctx context.Context, name string, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.apps[name]
	if a == nil || a.removed {
		return fmt.Errorf("pinning app %q: %w", name, ErrUnknownApp)
	}
	if a.over.Disabled {
		return fmt.Errorf("pinning app %q: %w", name, ErrDisabled)
	}
	o := a.over
	o.App, o.Pinned, o.PinnedUntil = name, true, until
	m.setOverrideLocked(o)
	m.log.Info("app pinned", "app", name, "until", pinText(until))
	m.disarmIdleLocked(a)
	if a.state == Ready {
		m.armIdleLocked(a) // a pin with an end: the countdown from then
	}
	if _, _, err := m.waitReadyLocked(ctx, name, "manual", false, nil); err != nil {
		return fmt.Errorf("pinning app %q: %w", name, err)
	}
	return nil
}

// Unpin ends app's pin: its idle countdown starts now.
func (m *Manager) Unpin(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.apps[name]
	if a == nil || a.removed {
		return fmt.Errorf("unpinning app %q: %w", name, ErrUnknownApp)
	}
	if !a.over.Pinned {
		return nil
	}
	o := a.over
	o.Pinned, o.PinnedUntil = false, time.Time{}
	m.setOverrideLocked(o)
	m.log.Info("app unpinned", "app", name)
	if now := time.Now(); now.After(a.keepUntil) {
		a.keepUntil = now
	}
	if a.state == Ready {
		m.armIdleLocked(a)
	}
	return nil
}

// Disable stops app (reason "disabled") and refuses its wakes, connections
// and scheduled ones, with ErrDisabled until Enable; a pin ends. It
// returns once the app is stopped or ctx ends.
func (m *Manager) Disable(ctx context.Context, name string) error {
	m.mu.Lock()
	a := m.apps[name]
	if a == nil || a.removed {
		m.mu.Unlock()
		return fmt.Errorf("disabling app %q: %w", name, ErrUnknownApp)
	}
	o := a.over
	o.App, o.Disabled, o.Pinned, o.PinnedUntil = name, true, false, time.Time{}
	m.setOverrideLocked(o)
	m.log.Info("app disabled", "app", name)
	a.broadcast() // waiters for a start give up now
	m.mu.Unlock()
	return m.Stop(ctx, name, "disabled")
}

// Enable lets app be woken again; a persistent or always app starts at
// once.
func (m *Manager) Enable(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.apps[name]
	if a == nil || a.removed {
		return fmt.Errorf("enabling app %q: %w", name, ErrUnknownApp)
	}
	if !a.over.Disabled {
		return nil
	}
	o := a.over
	o.Disabled = false
	m.setOverrideLocked(o)
	m.log.Info("app enabled", "app", name)
	if a.state == Stopped && startsAtBoot(a.spec) && !m.closed {
		m.beginStartLocked(a, "manual")
	}
	return nil
}

// keepsRunning reports whether a must be started again after a crash: an
// always app, or a pinned one.
func keepsRunning(a *app) bool {
	return mode(a.spec) == appfile.Always || a.pinned(time.Now())
}

// pinText is a pin's end for the log.
func pinText(until time.Time) string {
	if until.IsZero() {
		return "unpinned"
	}
	return until.Format(time.RFC3339)
}
