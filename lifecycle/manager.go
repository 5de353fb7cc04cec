// Package lifecycle runs DynaPM's apps: a state machine per app (stopped,
// starting, ready, stopping, failed), spawning through a Driver, readiness
// probes, leases for connections, idle stops, crash backoff and restarts.
//
// All state lives in one Manager under one lock. Nothing polls: each app
// costs a map entry until something happens to it, and timers (idle stop,
// backoff) are armed only while they can fire. Each running process has one
// goroutine that spawns, probes, and waits for it to end or be stopped.
package lifecycle

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// Config holds a Manager's settings. Zero values take the defaults.
type Config struct {
	// StateDir holds logs/NAME.log, each app's stdout and stderr.
	StateDir string
	// Logger receives the Manager's own log; nil means slog.Default().
	Logger *slog.Logger
	// Driver starts the apps' programs. Required.
	Driver Driver
	// Drivers holds the other drivers by the name an app file gives in
	// driver: (docker, swarm, command). Driver serves exec and apps that
	// name none; an app naming a driver missing here fails to start.
	Drivers map[string]Driver
	// BackoffMin and BackoffMax bound the delay before a start after a
	// failure (default 1s and 1m); see backoff.go for the policy.
	BackoffMin, BackoffMax time.Duration
	// BeforeStart, when set, is called before each spawn, outside the
	// Manager's lock, with a context cancelled if the start is called off.
	// The daemon passes the memory Monitor's MakeRoom, which may stop other
	// apps (through this Manager) to make room for app.
	BeforeStart func(ctx context.Context, app string)
	// SocketOwner, when set, is the uid that must listen on the socket
	// file of an app served on one (the user its program runs as): a
	// connect whose listener (SO_PEERCRED) is someone else's does not make
	// the start ready. The daemon's l4 judges its own connects alike.
	SocketOwner func(spec *appfile.Spec) (uint32, error)
	// Logs, when set, gives each start the writer for the program's
	// output instead of STATE/logs/NAME.log opened directly: the daemon
	// passes applog.Logs, which rotates the files.
	Logs LogOpener
	// StartGroup, when set, starts each try of a ready.command (a cmd that
	// asks for a process group of its own) as spec's program runs: its
	// user, group, limits and umask, the group guarded like the app's own.
	// untrack is called once the group is gone. The daemon passes the exec
	// driver's; without it, a ready.command of an app with user, group,
	// limits or umask fails the start rather than run with more rights.
	StartGroup func(cmd *exec.Cmd, spec *appfile.Spec, program string) (untrack func(), err error)
	// Events, when set, is told of starts, readiness and stops (metrics).
	// Its methods are called with the Manager's lock held: they must be
	// quick and must not call the Manager.
	Events Events
	// Sockets gives handoff: socket programs their listening sockets;
	// without it such an app fails to start. The daemon passes its
	// l4.Server.
	Sockets Sockets
	// ProbeInterval is the first interval between readiness probes
	// (default 100µs); after the first 20ms of a start it grows to 500µs
	// (probe.go).
	ProbeInterval time.Duration
}

// LogOpener opens a writer for one start of app. The program gets w as
// stdout and stderr; wait blocks until everything written to w by anyone
// is in the log (or ctx ends).
type LogOpener interface {
	Open(app string) (w *os.File, wait func(context.Context) error, err error)
}

// LogTapper is a LogOpener that can show a start's output to the Manager
// as it passes into the log: ready: {log: REGEXP} needs it. tap is called
// with each piece of output, in order, until it returns false; it must be
// quick. Without one, a start waiting for a log line fails.
type LogTapper interface {
	OpenTapped(app string, tap func(p []byte) bool) (w *os.File, wait func(context.Context) error, err error)
}

// Events receives the Manager's lifecycle events, for metrics. They are per
// program, that is per instance: each instance of a scaled app that starts
// reports AppStarted, then AppReady or AppStopped ("failed"), and each one
// that ends reports AppStopped, whether the app runs on with its other
// instances or not. Starts minus stops is thus the number of programs
// alive, and a cold start is observed once per program spawned.
type Events interface {
	// AppStarted: a program is being spawned; reason is what asked for it
	// (connection, cron, manual, boot, restart...).
	AppStarted(app, reason string)
	// AppReady: the program passed its readiness probe, coldStart after
	// it was spawned.
	AppReady(app string, coldStart time.Duration)
	// AppStopped: a program is gone; reason is why (idle, memory,
	// manual, reload, shutdown, crash, failed...).
	AppStopped(app, reason string)
}

// Manager keeps the configured apps and their processes. It satisfies
// l4.Waker. All methods are safe for concurrent use.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	probe *prober
	// mu guards apps, ran and closed, and every app and instance. The methods
	// that must be called with it held end in Locked.
	mu   sync.Mutex
	apps map[string]*app
	// ran holds the apps that have started at least once, so that what
	// only concerns running apps (the memory check) does not walk
	// thousands of apps that never ran.
	ran    map[*app]struct{}
	closed bool // Shutdown began: no new starts, waiters fail
	// launches numbers instances as they launch (instance.seq).
	launches uint64
	// overrides holds pins and disables by app name, whether the app is
	// configured now or not (manager_overrides.go).
	overrides map[string]Override

	// adopting counts the goroutines asking a RunningChecker about new
	// apps; stopAdopting calls them off at Shutdown.
	// hooks counts the hooks running on goroutines of their own
	// (after_start, after_stop); Shutdown waits for them.
	hooks sync.WaitGroup

	adopting     sync.WaitGroup
	adoptCtx     context.Context
	stopAdopting context.CancelFunc
}

// NewManager returns a Manager with no apps; Apply gives it some.
func NewManager(cfg Config) *Manager {
	if cfg.Driver == nil {
		panic("lifecycle: Config.Driver is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = defaultBackoffMin
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = defaultBackoffMax
	}
	cfg.BackoffMax = max(cfg.BackoffMax, cfg.BackoffMin)
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = defaultProbeInterval
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, probe: newProber(), apps: make(map[string]*app), ran: make(map[*app]struct{}),
		overrides: make(map[string]Override)}
	m.adoptCtx, m.stopAdopting = context.WithCancel(context.Background())
	for _, d := range cfg.Drivers {
		if w, ok := d.(OutsideStartWatcher); ok {
			w.WatchOutsideStarts(m)
		}
	}
	return m
}

// Apply makes the managed set match specs. New apps are added (persistent
// and always apps start at once, reason "boot"). Changed apps take their new
// spec: timeouts, max_pending, stop settings and mode apply at once; a
// changed command, dir, env or upstream restarts a running app (callers
// arriving meanwhile wait and are served by the new process). Apps missing
// from specs are stopped gracefully (reason "removed") and forgotten. Apps
// whose *Spec is unchanged are not touched.
func (m *Manager) Apply(specs []*appfile.Spec) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	seen := make(map[string]bool, len(specs))
	for _, spec := range specs {
		seen[spec.Name] = true
		a := m.apps[spec.Name]
		if a == nil {
			a = newApp(spec)
			a.over = m.overrides[spec.Name]
			m.apps[spec.Name] = a
			if bootsNow(a) {
				m.beginStartLocked(a, "boot")
			} else {
				m.maybeAdoptLocked(a)
			}
			continue
		}
		m.updateLocked(a, spec)
	}
	for name, a := range m.apps {
		if !seen[name] && !a.removed {
			m.removeLocked(a)
		}
	}
}

// updateLocked gives a known app its new spec.
func (m *Manager) updateLocked(a *app, spec *appfile.Spec) {
	old, wasRemoved := a.spec, a.removed
	if !wasRemoved && (old == spec || old.Equal(spec)) {
		return // untouched: no timer re-armed, no waiter woken
	}
	a.spec, a.removed = spec, false
	restart := spec.NeedsRestart(old)
	switch a.state {
	case Starting, Ready, Frozen:
		if restart {
			m.log.Info("restarting app: spec changed", "app", a.name)
			a.restartAfterStop, a.restartReason = true, "reload"
			m.stopRunningLocked(a, "reload")
			return
		}
		switch {
		case a.state == Frozen && (spec.IdleAction != appfile.IdleFreeze || startsAtBoot(spec)):
			// No longer to be frozen: running again, it stops when idle
			// (or runs on, persistent or always).
			m.thawLocked(a, "reload")
		case a.state == Frozen && !a.thawing:
			m.armFreezeTimeoutLocked(a)
		}
	case Stopping:
		// The new spec decides what runs once the old process is gone.
		if bootsNow(a) && !a.restartAfterStop {
			a.restartAfterStop, a.restartReason = true, "reload"
		}
	case Failed:
		// A changed command may be the fix: forget the failures.
		if restart {
			m.disarmBackoffLocked(a)
			a.failures = 0
			a.setState(Stopped)
			if bootsNow(a) {
				m.beginStartLocked(a, "reload")
				return
			}
		}
	case Stopped:
		if bootsNow(a) {
			m.beginStartLocked(a, "reload")
			return
		}
	}
	// Settings that need no restart: re-evaluate the idle timer with the
	// new mode and idle_timeout, and the instances with the new scale.
	if a.state == Ready {
		m.trimToMaxLocked(a)
		m.armIdleLocked(a)
		m.ensureMinLocked(a)
	}
	a.broadcast() // waiters re-read max_pending and the like
}

// removeLocked stops an app that left the configuration and forgets it once
// its process is gone.
func (m *Manager) removeLocked(a *app) {
	a.removed = true
	a.restartAfterStop = false
	m.stopInetdLocked(a, "removed")
	m.disarmIdleLocked(a)
	m.disarmBackoffLocked(a)
	switch a.state {
	case Starting, Ready, Frozen:
		m.stopRunningLocked(a, "removed")
	case Stopping:
		a.broadcast()
	default:
		m.forgetLocked(a)
		a.setState(Stopped)
	}
}

// forgetLocked drops a removed app, and tells its driver (AppForgetter)
// unless an app of that name came back meanwhile.
func (m *Manager) forgetLocked(a *app) {
	if m.apps[a.name] == a {
		delete(m.apps, a.name)
		if drv, err := m.driverFor(a.spec); err == nil {
			if f, ok := drv.(AppForgetter); ok {
				f.ForgetApp(a.name)
			}
		}
	}
	delete(m.ran, a)
}
