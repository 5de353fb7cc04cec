package lifecycle

import (
	"context"
	"fmt"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// Hooks (hooks: in the app file) run around each instance's start and
// stop, as the app's program runs (runGroup), with its env and dir, $PORT,
// $INSTANCE, DYNAPM_APP and DYNAPM_REASON (why it starts or stops), output
// to the app's log, each bounded by hook_timeout:
//
//   - before_start, in the instance's goroutine before the spawn: failing,
//     it fails the start;
//   - after_start, once the instance is ready, on a goroutine of its own;
//   - before_stop, in the instance's goroutine before the stop signal;
//   - after_stop, once the process is gone, on a goroutine of its own;
//     the app's next start waits for it (a backup must not race a start).
//
// Only before_start decides anything; the others are logged.

func hookTimeout(spec *appfile.Spec) time.Duration {
	if spec.HookTimeout <= 0 {
		return appfile.DefaultHookTimeout
	}
	return spec.HookTimeout
}

// runHook runs one hook of in's spec, named which, for reason, and returns
// its error (logged here).
func (m *Manager) runHook(ctx context.Context, in *instance, which string, argv []string, reason string) error {
	if len(argv) == 0 {
		return nil
	}
	name, spec := in.app.name, in.spec
	port := int(in.upstream.Port())
	env := append(buildEnv(spec, port, in.index, in.socket), "DYNAPM_APP="+name, "DYNAPM_REASON="+reason)
	w, wait, err := m.openOutput(name)
	began := time.Now()
	if err == nil {
		err = m.runGroup(ctx, spec, expandArgs(argv, port, in.socket), env, w, hookTimeout(spec))
		w.Close()
		wctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = wait(wctx)
		cancel()
	}
	attrs := []any{"app", name, "hook", which, "reason", reason, "took", time.Since(began).Round(time.Millisecond)}
	if err != nil {
		err = fmt.Errorf("%s hook: %w", which, err)
		m.log.Warn("hook failed", append(attrs, "err", err)...)
		return err
	}
	m.log.Info("hook ran", attrs...)
	return nil
}

// goHook runs a hook that decides nothing on a goroutine of its own,
// counted in m.hooks so that Shutdown waits for it; the channel it returns
// is closed when the hook is done.
func (m *Manager) goHook(in *instance, which string, argv []string, reason string) chan struct{} {
	done := make(chan struct{})
	m.hooks.Add(1)
	go func() {
		defer m.hooks.Done()
		defer close(done)
		_ = m.runHook(context.Background(), in, which, argv, reason)
	}()
	return done
}

// afterStopHookLocked runs in's after_stop hook, if any, for reason, and
// records it as the one a's next start waits for.
func (m *Manager) afterStopHookLocked(a *app, in *instance, reason string) {
	if len(in.spec.Hooks.AfterStop) == 0 || in.proc == nil {
		return
	}
	a.afterStop = m.goHook(in, "after_stop", in.spec.Hooks.AfterStop, reason)
}

// waitAfterStop waits for the after_stop hook of a's last stop, if it
// still runs, or until ctx ends.
func (m *Manager) waitAfterStop(ctx context.Context, a *app) {
	m.mu.Lock()
	done := a.afterStop
	m.mu.Unlock()
	if done == nil {
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}
