package lifecycle

import (
	"context"
	"fmt"
)

// Exclusive groups (exclusive: NAME in the app file): at most one app of a
// group runs at a time. Before an instance of an app in a group spawns its
// program, awaitExclusive stops the other apps of the group that are ready
// (reason "exclusive": stop_signal, then SIGKILL after stop_timeout) and
// waits until their processes are gone; the connections held for the
// woken app wait meanwhile.
//
// Two apps of a group woken together must not call each other's start
// off forever, and the connections held for each must reach its program:
// a ready peer is stopped only once no connection waits to lease it
// (waitReadyLocked wakes the group when the last one has), and each launch
// takes a number (instance.seq), and a start
// waits for a peer that is still starting and was launched earlier to get
// ready (then stops it), while a peer launched later waits for it. So each
// start reaches ready once, in the order of the wakes.

// awaitExclusive returns once no other app of in's group has a process,
// stopping those that are ready, within the app's start_timeout (ctx).
func (m *Manager) awaitExclusive(ctx context.Context, a *app, in *instance) error {
	group := in.spec.Exclusive
	if group == "" {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		if m.closed {
			return ErrShuttingDown
		}
		var wait <-chan struct{}
		for _, x := range m.apps {
			if x == a || x.spec.Exclusive != group {
				continue
			}
			for _, xin := range x.insts {
				switch {
				case xin.ready() && x.state == Ready && x.pending > 0:
					// Its held connections lease it first: each is
					// served by the program it was held for.
					wait = x.changed
				case xin.ready() && (x.state == Ready || x.state == Frozen):
					m.log.Info("stopping app: another app of its exclusive group starts", "app", x.name, "group", group, "for", a.name)
					m.disarmIdleLocked(x)
					m.stopRunningLocked(x, "exclusive")
					wait = xin.done
				case xin.starting() && xin.seq > in.seq:
					// Launched after us: it waits for us.
				case xin.starting():
					wait = x.changed // ready soon, then stopped
				default:
					wait = xin.done // stopping, or ready alone in a stopping app
				}
				if wait != nil {
					break
				}
			}
			if wait != nil {
				break
			}
		}
		if wait == nil {
			return nil
		}
		m.mu.Unlock()
		select {
		case <-wait:
			m.mu.Lock()
		case <-ctx.Done():
			m.mu.Lock()
			return fmt.Errorf("waiting for the other apps of exclusive group %q to stop: %w", group, ctx.Err())
		}
	}
}
