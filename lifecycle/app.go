package lifecycle

import (
	"context"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// app is the Manager's record of one configured app. Every field is guarded
// by Manager.mu, and every method of app is called with it held.
type app struct {
	name  string
	spec  *appfile.Spec
	state State
	// stopKilled: an instance's last stop ended in a kill after
	// stop_timeout (KillReporter).
	stopKilled bool
	// changed is closed (and replaced) at every state change: waiters hold
	// the current channel while they sleep, like a condition variable that
	// can be selected together with a context.
	changed chan struct{}

	// insts holds the app's live instances, sorted by index: one for an
	// app without scale. While state is starting, ready or stopping there
	// is at least one; while stopped or failed only instances stopped on
	// their own (idle, scale down) may linger until their process is gone.
	// See app_instances.go for the invariants.
	insts []*instance
	// restartAfterStop asks for a fresh start as soon as the instance being
	// stopped is gone (reload of a changed spec, Restart).
	restartAfterStop bool
	restartReason    string
	// removed: the app left the configuration; it is deleted from the map
	// once its process is gone.
	removed bool
	// over is the app's pin or disable (manager_overrides.go).
	over Override
	// afterStop is closed when the after_stop hook of the last stop is
	// done; nil when there was none. The next start waits for it.
	afterStop chan struct{}

	conns       int // open leases, over all instances
	kernelConns int // handoff: socket: established connections at the last count
	// inetd holds the running programs of a handoff: inetd app, one per
	// connection (inetd.go).
	inetd   map[*inetdProg]struct{}
	pending int // Wake callers held while the app starts or stops
	// neededRefs counts the live instances of other apps that need this
	// one (manager_needs.go): while any, it is not stopped for idleness.
	neededRefs   int
	lastActivity time.Time
	keepUntil    time.Time // the idle countdown starts no earlier (cron wake keep)
	idleTimer    *time.Timer

	// Frozen (freeze.go): when, the timer of freeze_timeout, and whether a
	// thaw is under way and why.
	frozenAt    time.Time
	freezeTimer *time.Timer
	thawing     bool
	thawReason  string

	failures     int // consecutive failures, for backoff
	backoffUntil time.Time
	backoffTimer *time.Timer
	lastErr      string

	starts, restarts int

	// refused counts Wake callers turned away by max_pending since the last
	// log line about it; refusedLogged is when that line was written.
	refused       int
	refusedLogged time.Time
	refusedTotal  int
}

func newApp(spec *appfile.Spec) *app {
	return &app{name: spec.Name, spec: spec, state: Stopped, changed: make(chan struct{})}
}

// setState moves a to s and wakes everything waiting on a change.
func (a *app) setState(s State) {
	a.state = s
	a.broadcast()
}

// broadcast wakes every waiter so it looks at the app again.
func (a *app) broadcast() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// instance is one start of an app: from the spawn to the end of its process.
// One goroutine (Manager.runInstance) owns it; the fields other than those
// set before that goroutine starts are guarded by Manager.mu, and every
// method of instance is called with it held.
type instance struct {
	spec   *appfile.Spec // the spec it was started with
	reason string        // why it was started: connection, cron, manual, boot, reload, scale...
	// index is $INSTANCE: the lowest index no live instance of the app
	// held when it started.
	index int
	// app is the app it belongs to, so that a lease's release closure
	// holds one pointer less (the warm path allocates it per connection).
	app *app
	// ctx is cancelled when the start is called off (stop while starting,
	// shutdown), so that spawning and probing end at once.
	ctx    context.Context
	cancel context.CancelFunc
	// stopCh is closed when the Manager wants the process gone;
	// stopReason says why.
	stopCh     chan struct{}
	stopReq    bool
	stopReason string
	// done is closed when the goroutine has finished with the instance
	// (process gone, state changed).
	done chan struct{}

	proc     Process
	upstream netip.AddrPort
	// chosen is closed once the program serving on upstream is spawned,
	// for the callers of WakeEarly waiting for it; chosenClosed says it
	// is.
	chosen       chan struct{}
	chosenClosed bool
	// socket is the socket file the program serves on instead of a port
	// (a unix: upstream, or the $SOCKET DynaPM picked), else "".
	socket string
	// watch is the notify socket or output tap of a ready: {notify} or
	// {log} start; nil for the others.
	watch     *readyWatch
	spawnedAt time.Time
	readyAt   time.Time // zero until ready
	// startErr is why the start failed; waiters that waited for this start
	// return it.
	startErr error

	// needs are the apps this instance holds a reference on, from its
	// launch until its process is gone.
	needs []*app
	// seq orders the launches of the Manager's instances: of two apps of
	// an exclusive group starting together, the earlier goes first.
	seq uint64
	// frozen is whether the Manager wants in's processes suspended;
	// freezeApplied what the last Freeze or Thaw achieved. freezeMu
	// serialises those calls (freeze.go); it is not under Manager.mu.
	frozen        bool
	freezeApplied bool
	freezeMu      sync.Mutex
	// cancelFreeze ends the wait of a Freeze call under way, when the
	// instance can be thawed at once (QuickThawer): a thaw need not wait
	// for the kernel to report the freeze done. Under Manager.mu.
	cancelFreeze context.CancelFunc

	conns        int       // open leases on this instance
	passive      int       // open leases that do not keep it up (wake_from)
	lastActivity time.Time // last lease or release, or when it got ready

	// spare is the readiness probe's connection to the program, kept when
	// connections were waiting for it to be ready: the first of them to
	// lease the instance through WakeConn takes it and saves a connect
	// (docs/BENCHMARKS.md, probe connection). Nil when there is none. Closed
	// when nobody waits any more and when the instance is asked to stop: a
	// program draining its connections must not wait for one nobody uses.
	spare *spareConn
}

// spareConn is a connected socket's descriptor.
type spareConn struct{ fd int }

// takeSpare returns the instance's spare connection, which the caller
// then owns, or -1.
func (in *instance) takeSpare() int {
	if in.spare == nil {
		return -1
	}
	fd := in.spare.fd
	in.spare = nil
	return fd
}

// dropSpare closes the instance's spare connection, if any.
func (in *instance) dropSpare() {
	if fd := in.takeSpare(); fd >= 0 {
		syscall.Close(fd)
	}
}

// requestStop asks the instance to end (idempotent).
func (in *instance) requestStop(reason string) {
	if in.stopReq {
		return
	}
	in.stopReq = true
	in.stopReason = reason
	in.dropSpare()
	close(in.stopCh)
	in.cancel()
}

// stopSettings returns the signal and grace period to stop spec's process,
// with the defaults for a spec built without them.
func stopSettings(spec *appfile.Spec) (syscall.Signal, time.Duration) {
	sig, timeout := spec.StopSignal, spec.StopTimeout
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	if timeout <= 0 {
		timeout = appfile.DefaultStopTimeout
	}
	return sig, timeout
}

func startTimeout(spec *appfile.Spec) time.Duration {
	if spec.StartTimeout <= 0 {
		return appfile.DefaultStartTimeout
	}
	return spec.StartTimeout
}

func idleTimeout(spec *appfile.Spec) time.Duration {
	if spec.IdleTimeout <= 0 {
		return appfile.DefaultIdleTimeout
	}
	return spec.IdleTimeout
}

func maxPending(spec *appfile.Spec) int {
	if spec.MaxPending <= 0 {
		return appfile.DefaultMaxPending
	}
	return spec.MaxPending
}

func mode(spec *appfile.Spec) appfile.Mode {
	if spec.Mode == "" {
		return appfile.OnDemand
	}
	return spec.Mode
}

// startsAtBoot reports whether the app runs without waiting for a connection.
func startsAtBoot(spec *appfile.Spec) bool {
	m := mode(spec)
	return m == appfile.Persistent || m == appfile.Always
}

// bootsNow reports whether a starts without waiting for a connection now:
// a persistent, always or pinned app that is not disabled.
func bootsNow(a *app) bool {
	return (startsAtBoot(a.spec) || a.pinned(time.Now())) && !a.over.Disabled
}
