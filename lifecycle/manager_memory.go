package lifecycle

import (
	"context"
	"fmt"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/memory"
)

// MemoryUsage returns, for the memory Monitor, every app that has run since
// the daemon started: its process (and the instances that report their own
// memory, MemoryReporter), connections (held callers included:
// stopping an app they wait for would cut them too), last activity and
// memory settings. Apps that never ran are left out: they use no memory and
// have no peak to remember, and with thousands of them configured the
// monitor's check must not cost thousands of entries a second.
func (m *Manager) MemoryUsage() []memory.AppUsage {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]memory.AppUsage, 0, len(m.ran))
	for a := range m.ran {
		if a.removed {
			continue
		}
		u := memory.AppUsage{
			Name:     a.name,
			Mode:     memoryMode(a),
			Stopping: a.state == Stopping,
			Frozen:   a.state == Frozen && !a.thawing,
			// An app that running apps need counts as in use: a stop
			// would cut them too (StopForMemory stops them first).
			Connections: a.conns + a.pending + a.neededRefs,
			Priority:    a.spec.MemoryPriority,
			LastActive:  a.lastActivity,
			MemoryMax:   a.spec.MemoryMax,
		}
		for _, in := range a.insts {
			if in.proc != nil {
				if u.Pid == 0 {
					u.Pid = in.proc.Pid()
				}
				if len(a.insts) > 1 {
					u.Pids = append(u.Pids, in.proc.Pid())
				}
				// A container's memory is the engine's figure, which the
				// Monitor asks for without this lock held.
				if r, ok := in.proc.(MemoryReporter); ok {
					u.Reporters = append(u.Reporters, r)
				}
			}
			// An app that never had a connection (persistent, cron) was
			// last active when it started.
			if in.spawnedAt.After(u.LastActive) {
				u.LastActive = in.spawnedAt
			}
		}
		if u.Frozen {
			u.FrozenSince = a.frozenAt
		}
		out = append(out, u)
	}
	return out
}

// StopForMemory stops app even with open connections (which the stop cuts)
// and waits until its process is gone. Whatever its mode, it stays stopped
// until a connection (or a cron wake) starts it again.
func (m *Manager) StopForMemory(ctx context.Context, name, reason string) error {
	return m.Stop(ctx, name, reason)
}

// RestartForMemory replaces app's process, which outgrew its memory_max. An
// on-demand app is only stopped: its next connection starts it fresh, and
// until then it uses no memory. Persistent and always apps are started
// again at once.
func (m *Manager) RestartForMemory(ctx context.Context, name, reason string) error {
	m.mu.Lock()
	a := m.apps[name]
	onDemand := a != nil && mode(a.spec) == appfile.OnDemand
	m.mu.Unlock()
	if onDemand {
		return m.Stop(ctx, name, reason)
	}
	if err := m.restart(ctx, name, reason, reason); err != nil {
		return fmt.Errorf("restarting app %q for memory: %w", name, err)
	}
	return nil
}

// memoryMode is a's mode for the memory policy: a pinned app is kept up as
// an always app is, never stopped for memory.
func memoryMode(a *app) appfile.Mode {
	if a.pinned(time.Now()) {
		return appfile.Always
	}
	return mode(a.spec)
}
