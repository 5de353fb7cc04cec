package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// errNotReadyYet is the probe's last error while a ReadyChecker says no.
var errNotReadyYet = errors.New("driver reports not ready yet")

// driverFor returns the Driver that runs spec.
func (m *Manager) driverFor(spec *appfile.Spec) (Driver, error) {
	if spec.Driver == "" || spec.Driver == appfile.DriverExec {
		return m.cfg.Driver, nil
	}
	if d := m.cfg.Drivers[spec.Driver]; d != nil {
		return d, nil
	}
	return nil, fmt.Errorf("no %q driver in this daemon", spec.Driver)
}

// gateReady asks a Process's own readiness signal, when it has one, before
// the upstream is probed (see ReadyChecker).
func gateReady(ctx context.Context, checker ReadyChecker) error {
	if checker == nil {
		return nil
	}
	ok, err := checker.Ready(ctx)
	switch {
	case err != nil:
		return err
	case !ok:
		return errNotReadyYet
	}
	return nil
}

// stoppedOutsideLocked records the end of a ready instance that someone else
// stopped (reason outside), or the kernel at memory_max (reason memory): a
// stop, not a crash, so no backoff. The other instances of a
// scaled app serve on; when it was the last one the app is stopped, and an
// always app starts again.
func (m *Manager) stoppedOutsideLocked(a *app, in *instance, uptime time.Duration, reason string) {
	a.dropInstance(in)
	a.failures = 0
	a.lastErr = ""
	attrs := instAttrs(a, in, []any{"app", a.name, "status", exitStatus(in.proc), "uptime", uptime})
	if reason == "memory" {
		a.lastErr = in.proc.Err().Error()
		m.log.Warn("app stopped by the kernel at memory_max", append(attrs, "reason", reason)...)
	} else {
		m.log.Info("app stopped from outside", attrs...)
	}
	if m.cfg.Events != nil {
		m.cfg.Events.AppStopped(a.name, reason)
	}
	if a.active() > 0 {
		m.settleLocked(a)
		m.armIdleLocked(a)
		m.ensureMinLocked(a)
		return
	}
	a.setState(Stopped)
	m.afterStopLocked(a, "stopped from outside", mode(a.spec) == appfile.Always)
}

// maybeAdoptLocked asks the driver of a new on-demand app, when it can tell,
// whether the app already runs, and adopts it if so (see RunningChecker).
// The question is asked in a goroutine, outside the lock.
func (m *Manager) maybeAdoptLocked(a *app) {
	drv, err := m.driverFor(a.spec)
	if err != nil {
		return
	}
	rc, ok := drv.(RunningChecker)
	if !ok {
		return
	}
	m.adopting.Add(1)
	go m.adopt(a, a.spec, rc)
}

// adopt starts a (reason "adopt") if its driver reports it running and
// nothing has happened to it meanwhile.
func (m *Manager) adopt(a *app, spec *appfile.Spec, rc RunningChecker) {
	defer m.adopting.Done()
	ctx, cancel := context.WithTimeout(m.adoptCtx, startTimeout(spec))
	defer cancel()
	running, err := rc.Running(ctx, spec)
	if err != nil {
		m.log.Warn("cannot tell whether app runs already; it starts on demand", "app", spec.Name, "err", err)
		return
	}
	if !running {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.adoptLocked(a, func(s *appfile.Spec) bool { return s == spec })
}

// Adopt starts app name (reason "adopt") if it is stopped and same
// accepts its spec; it satisfies Adopter.
func (m *Manager) Adopt(name string, same func(*appfile.Spec) bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.adoptLocked(m.apps[name], same)
}

// adoptLocked starts a (reason "adopt") if nothing has happened to it since
// its driver saw it running: it is still configured, with a spec same
// accepts, and stopped.
func (m *Manager) adoptLocked(a *app, same func(*appfile.Spec) bool) bool {
	if a == nil || m.closed || a.removed || a.state != Stopped || m.apps[a.name] != a || !same(a.spec) {
		return false
	}
	m.beginStartLocked(a, "adopt")
	return true
}
