package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

// beginStartLocked moves a from stopped (or failed) to starting and launches
// the goroutine that spawns and probes the new instance.
func (m *Manager) beginStartLocked(a *app, reason string) {
	m.disarmBackoffLocked(a)
	m.disarmIdleLocked(a)
	m.launchLocked(a, reason)
	a.setState(Starting)
}

// launchLocked adds an instance to a (the lowest free index) and starts the
// goroutine that spawns and probes it. The app's state is the caller's
// business: beginStartLocked moves it to starting, a scale-up leaves it
// ready.
func (m *Manager) launchLocked(a *app, reason string) *instance {
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{
		spec:   a.spec,
		reason: reason,
		index:  a.freeIndex(),
		app:    a,
		ctx:    ctx,
		cancel: cancel,
		stopCh: make(chan struct{}),
		done:   make(chan struct{}),
		chosen: make(chan struct{}),
	}
	m.launches++
	in.seq = m.launches
	a.addInstance(in)
	m.holdNeedsLocked(in)
	a.starts++
	m.ran[a] = struct{}{}
	if m.cfg.Events != nil {
		m.cfg.Events.AppStarted(a.name, reason)
	}
	go m.runInstance(a, in)
	return in
}

// runInstance owns one instance from spawn to exit: it spawns the program,
// probes it until ready, then waits for it to exit or to be asked to stop,
// stops the whole process group, and records the outcome. State changes
// happen under m.mu; spawning, probing and stopping happen outside it.
func (m *Manager) runInstance(a *app, in *instance) {
	defer close(in.done)
	defer in.cancel()

	begun := time.Now()
	err := m.awaitNeeds(a, in)
	if err == nil {
		// Within start_timeout, as the needs: held connections wait
		// through both.
		ctx, cancel := context.WithDeadline(in.ctx, begun.Add(startTimeout(in.spec)))
		err = m.awaitExclusive(ctx, a, in)
		cancel()
	}
	m.waitAfterStop(in.ctx, a)
	if err == nil && m.cfg.BeforeStart != nil {
		m.cfg.BeforeStart(in.ctx, a.name)
	}
	// Once the process is gone (or was never started): the notify socket
	// and its reader go with it.
	defer func() { in.watch.close() }()
	var (
		proc    Process
		ready   *readiness
		logf    *os.File
		waitLog func(context.Context) error
	)
	if err == nil {
		proc, ready, logf, waitLog, err = m.spawnWaiting(a, in)
	}
	if logf != nil {
		// The program holds its own descriptor. Ours goes now: with
		// rotating logs it is a pipe, whose copy into the file ends only
		// once every writer has closed it.
		logf.Close()
	}
	if err != nil {
		m.mu.Lock()
		defer m.mu.Unlock()
		if in.stopReq {
			m.finishStopLocked(a, in, nil, "")
		} else {
			m.failStartLocked(a, in, fmt.Errorf("%w: %w", ErrStartFailed, err), "")
		}
		m.releaseNeedsLocked(in)
		return
	}

	deadline := in.spawnedAt.Add(startTimeout(in.spec))
	if len(in.spec.Needs) > 0 || in.spec.Exclusive != "" {
		// The wait for the needed apps and for the exclusive group is
		// part of this start: held connections wait through all of it
		// within start_timeout.
		deadline = begun.Add(startTimeout(in.spec))
	}
	conn, err := m.probe.waitReady(in.ctx, proc, ready, m.cfg.ProbeInterval, deadline)
	in.watch.startOver()
	var announce func()
	m.mu.Lock()
	switch {
	case in.stopReq:
		// Called off while starting: stop below.
	case err == nil:
		announce = m.becomeReadyLocked(a, in)
		if h := in.spec.Hooks.AfterStart; len(h) > 0 {
			m.goHook(in, "after_start", h, in.reason)
		}
		if conn >= 0 && a.pending > 0 {
			in.spare = &spareConn{fd: conn}
			conn = -1
		}
	case errors.Is(err, errExited):
		// Not ready, and no point waiting for the deadline: fail the
		// waiters now (after cleaning up the process group).
	default:
		in.startErr = fmt.Errorf("%w after %v: %v", ErrStartTimeout, startTimeout(in.spec), err)
		in.requestStop("start timeout")
		if a.state == Starting {
			a.setState(Stopping) // waiters see startErr and fail at once
		} // else an added instance: the app serves on with the others
	}
	m.mu.Unlock()
	if announce != nil {
		// The waiters just woken run on this thread's queue: let them
		// lease and serve their first clients before the log line is
		// formatted and written.
		runtime.Gosched()
		announce()
	}
	if conn >= 0 {
		syscall.Close(conn)
	}

	select {
	case <-proc.Done():
	case <-in.stopCh:
	}
	m.mu.Lock()
	in.dropSpare() // the program exited
	sig, grace := stopSettings(a.spec)
	wantTail := !in.stopReq || in.startErr != nil
	// A ready program asked to stop: before_stop first (it may still
	// talk to the program), whatever its outcome.
	beforeStop := in.stopReq && !in.readyAt.IsZero() && len(in.spec.Hooks.BeforeStop) > 0
	stopReason := in.stopReason
	m.mu.Unlock()
	m.thawForStop(in)
	if beforeStop {
		_ = m.runHook(context.Background(), in, "before_stop", in.spec.Hooks.BeforeStop, stopReason)
	}
	// Also after an exit of its own: the group may hold leftovers.
	stopErr := proc.Stop(sig, grace)
	if kr, ok := proc.(KillReporter); ok && kr.KilledAfterTimeout() {
		m.mu.Lock()
		a.stopKilled = true
		m.mu.Unlock()
	}
	tail := ""
	if wantTail {
		// The whole group is gone: let its last output reach the file.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = waitLog(ctx)
		cancel()
		tail = m.logTail(a.name) // file I/O: outside the lock
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.releaseNeedsLocked(in) // after the outcome: a restart holds them anew first
	m.afterStopHookLocked(a, in, endReason(in))
	switch {
	case in.stopReq:
		m.finishStopLocked(a, in, stopErr, tail)
	case in.readyAt.IsZero():
		m.failStartLocked(a, in, fmt.Errorf("%w: %w (%v)", ErrStartFailed, errExited, exitStatus(proc)), tail)
	case m.exitedOnItsOwn(a, in):
		m.exitedLocked(a, in)
	default:
		m.crashedLocked(a, in, tail)
	}
}

// maxDescriptorWait caps the pause between two tries of a start that
// found no descriptor left.
const maxDescriptorWait = 100 * time.Millisecond

// spawnWaiting is spawn, tried again while it fails for lack of
// descriptors (EMFILE, ENFILE: a flood of connections holds them all)
// until start_timeout from the first try: the start waits for
// descriptors, as its held clients do, rather than failing into backoff.
func (m *Manager) spawnWaiting(a *app, in *instance) (Process, *readiness, *os.File, func(context.Context) error, error) {
	deadline := time.Now().Add(startTimeout(in.spec))
	wait := 5 * time.Millisecond
	for {
		proc, ready, logf, waitLog, err := m.spawn(a, in)
		if err == nil || !noDescriptors(err) || time.Now().Add(wait).After(deadline) {
			return proc, ready, logf, waitLog, err
		}
		if logf != nil {
			logf.Close()
		}
		in.watch.close() // this try's notify socket
		if wait == 5*time.Millisecond {
			m.log.Warn("no descriptor left to start the app; trying again", "app", a.name, "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-in.ctx.Done():
			t.Stop()
			return nil, nil, nil, nil, err
		}
		wait = min(2*wait, maxDescriptorWait)
	}
}

// noDescriptors reports whether err says the process (EMFILE) or the
// system (ENFILE) has no descriptor left.
func noDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// spawn picks the upstream, sets up what the start waits for (a notify
// socket, a tap on the output), opens the log and starts the program. It
// returns what waitReady is to wait for.
func (m *Manager) spawn(a *app, in *instance) (Process, *readiness, *os.File, func(context.Context) error, error) {
	spec := in.spec
	var (
		upstream   netip.AddrPort
		port       int
		err        error
		owner      uint32 // who must listen on socket, when checkOwner
		checkOwner bool
	)
	socket := m.upstreamSocket(spec)
	switch {
	case spec.HandsOff(): // a handoff program listens on DynaPM's sockets
	case socket != "":
		if m.cfg.SocketOwner != nil {
			if owner, err = m.cfg.SocketOwner(spec); err != nil {
				return nil, nil, nil, nil, err
			}
			checkOwner = true
		}
		if spec.PicksSocket() {
			if err := preparePickedSocket(socket); err != nil {
				return nil, nil, nil, nil, err
			}
		}
	default:
		if upstream, port, err = pickUpstream(in.ctx, spec); err != nil {
			return nil, nil, nil, nil, err
		}
	}
	sockets, socketNames, err := m.handoffFiles(spec)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	defer closeFiles(sockets) // the program has its own once started
	var watch *readyWatch
	switch {
	case spec.Ready.Notify:
		if watch, err = newNotifyWatch(); err != nil {
			return nil, nil, nil, nil, err
		}
	case spec.Ready.Log != nil:
		watch = newLogWatch(spec.Ready.Log)
	}
	now := time.Now()
	m.mu.Lock()
	in.upstream, in.socket, in.spawnedAt, in.watch = upstream, socket, now, watch
	m.mu.Unlock()
	if err := m.runHook(in.ctx, in, "before_start", spec.Hooks.BeforeStart, in.reason); err != nil {
		return nil, nil, nil, nil, err
	}
	logf, waitLog, err := m.openLog(a.name, now, watch.tapFunc())
	if err != nil {
		return nil, nil, nil, nil, err
	}
	upstreamStr := spec.Upstream
	if upstreamStr == "" {
		upstreamStr = in.upstreamText()
	}
	drv, err := m.driverFor(spec)
	if err != nil {
		return nil, nil, logf, waitLog, err
	}
	env := buildEnv(spec, port, in.index, socket)
	proc, err := drv.Start(in.ctx, StartRequest{
		Spec:     expandSpec(spec, port, socket),
		Upstream: upstreamStr,
		Port:     port,
		// Last: the socket is DynaPM's, whatever the app's env says.
		Env:         append(env[:len(env):len(env)], watch.env()...),
		Log:         logf,
		Sockets:     sockets,
		SocketNames: socketNames,
	})
	if err != nil {
		return nil, nil, logf, waitLog, err
	}
	watch.started(proc.Pid(), m.log.With("app", a.name))
	m.mu.Lock()
	in.proc = proc
	if upstream.IsValid() && !in.chosenClosed {
		// Told once the program runs: waking the callers of WakeEarly
		// any sooner would slow its spawn.
		in.chosenClosed = true
		close(in.chosen)
	}
	m.mu.Unlock()
	r := &readiness{upstream: upstream, socket: socket, http: spec.Ready.HTTP, tcp: spec.Ready.TCP,
		udpBound: spec.UDPOnly() && spec.Ready.Kind() == appfile.ReadyConnect}
	r.owner, r.checkOwner = owner, checkOwner
	if watch != nil {
		r.signal, r.awaited = watch.ready, watch.awaited
	} else if spec.HandsOff() && spec.Ready.Kind() == appfile.ReadyConnect {
		r.signal = readyAtSpawn
	}
	if len(spec.Ready.Command) > 0 {
		r.command = m.readyCommand(spec, port, socket, env)
	}
	return proc, r, logf, waitLog, nil
}

// closeFiles closes files.
func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// pickUpstream returns where the program must listen: the app's upstream, or
// when it has none a loopback port that is free right now in every
// protocol the app listens on.
func pickUpstream(ctx context.Context, spec *appfile.Spec) (netip.AddrPort, int, error) {
	upstream := spec.Upstream
	if upstream == "" {
		port, err := freeLoopbackPortFor(spec)
		if err != nil {
			return netip.AddrPort{}, 0, fmt.Errorf("picking a free port: %w", err)
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port)), port, nil
	}
	if ap, err := netip.ParseAddrPort(upstream); err == nil {
		return ap, int(ap.Port()), nil
	}
	host, portStr, err := net.SplitHostPort(upstream)
	if err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("parsing upstream %q: %w", upstream, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("parsing upstream %q: %w", upstream, err)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, 0, fmt.Errorf("resolving upstream %q: %w", upstream, err)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(port)), int(port), nil
}

// endReason is why in's process ended, for hooks: the stop's reason,
// "failed" for a start that did not get ready, "crash" for an exit of its
// own.
func endReason(in *instance) string {
	switch {
	case in.startErr != nil || (in.readyAt.IsZero() && !in.stopReq):
		return "failed"
	case in.stopReq:
		return in.stopReason
	}
	return "crash"
}

// exitStatus describes how a process ended.
func exitStatus(p Process) string {
	if err := p.Err(); err != nil {
		return err.Error()
	}
	return "exit status 0"
}

// becomeReadyLocked: the probe passed; the instance joins the rotation. It
// returns the announcement of the start (the idle timer, the log line and
// the event), for the caller to make once m.mu is released: the waiters
// woken here need the lock to lease, and formatting and writing a log line
// under it would hold up the first client of every cold start.
func (m *Manager) becomeReadyLocked(a *app, in *instance) (announce func()) {
	now := time.Now()
	in.readyAt = now
	in.lastActivity = now
	a.lastActivity = now
	a.lastErr = ""
	a.setState(Ready)
	refused := a.refused
	if refused > 0 {
		a.refused, a.refusedLogged = 0, now
	}
	m.ensureMinLocked(a)
	where := []any{"upstream", in.upstreamText()}
	if in.spec.HandsOff() {
		where = []any{"handoff", in.spec.Handoff}
	}
	attrs := instAttrs(a, in, append([]any{"app", a.name, "reason", in.reason, "pid", in.proc.Pid()},
		append(where, "took", now.Sub(in.spawnedAt))...))
	name, took, limit := a.name, now.Sub(in.spawnedAt), maxPending(a.spec)
	return func() {
		// The idle timer too: the first waiter's lease would disarm it at
		// once, and arming it can cost a write to wake Go's netpoller.
		m.mu.Lock()
		if a.state == Ready && !m.closed {
			m.armIdleLocked(a)
		}
		m.mu.Unlock()
		m.log.Info("app started", attrs...)
		if m.cfg.Events != nil {
			m.cfg.Events.AppReady(name, took)
		}
		if refused > 0 {
			m.logRefused(name, refused, limit)
		}
	}
}

// failStartLocked records a start that did not reach ready.
func (m *Manager) failStartLocked(a *app, in *instance, err error, tail string) {
	if in.startErr == nil {
		in.startErr = err
	}
	a.dropInstance(in)
	a.lastErr = in.startErr.Error()
	a.failures++
	d := backoffDelay(a.failures, m.cfg.BackoffMin, m.cfg.BackoffMax)
	attrs := instAttrs(a, in, []any{"app", a.name, "reason", in.reason, "err", in.startErr, "failures", a.failures, "backoff", d})
	if tail != "" {
		attrs = append(attrs, "log_tail", tail)
	}
	m.log.Warn("app failed to start", attrs...)
	if m.cfg.Events != nil {
		m.cfg.Events.AppStopped(a.name, "failed")
	}
	m.logRefusedLocked(a)
	if a.active() > 0 {
		// An added instance failed: the others serve on, and no instance
		// is added before the backoff is over.
		m.holdOffScalingLocked(a, d)
		return
	}
	m.enterFailedLocked(a, d)
}

// holdOffScalingLocked keeps a running app from adding instances for d after
// one failed or crashed; the backoff timer then tops it up to its minimum.
func (m *Manager) holdOffScalingLocked(a *app, d time.Duration) {
	a.backoffUntil = time.Now().Add(d)
	m.armBackoffLocked(a, d)
	m.settleLocked(a)
}

// crashedLocked records the exit of a ready instance that nobody asked to
// stop.
func (m *Manager) crashedLocked(a *app, in *instance, tail string) {
	uptime := time.Since(in.readyAt)
	if errors.Is(in.proc.Err(), ErrStoppedOutside) {
		m.stoppedOutsideLocked(a, in, uptime, "outside")
		return
	}
	if errors.Is(in.proc.Err(), ErrMemoryKilled) {
		m.stoppedOutsideLocked(a, in, uptime, "memory")
		return
	}
	a.dropInstance(in)
	a.lastErr = "exited: " + exitStatus(in.proc)
	if uptime >= m.cfg.BackoffMax {
		a.failures = 0 // it ran long enough: not a crash loop
	} else {
		a.failures++
	}
	d := backoffDelay(a.failures, m.cfg.BackoffMin, m.cfg.BackoffMax)
	attrs := instAttrs(a, in, []any{"app", a.name, "pid", in.proc.Pid(), "status", exitStatus(in.proc), "uptime", uptime, "backoff", d})
	if tail != "" {
		attrs = append(attrs, "log_tail", tail)
	}
	m.log.Warn("app exited", attrs...)
	if m.cfg.Events != nil {
		m.cfg.Events.AppStopped(a.name, "crash")
	}
	if a.active() > 0 {
		// Out of the rotation; the others serve on. Its connections are
		// lost, theirs are not.
		if d > 0 {
			m.holdOffScalingLocked(a, d)
		} else {
			m.settleLocked(a)
		}
		m.armIdleLocked(a)
		m.ensureMinLocked(a)
		return
	}
	if d > 0 {
		m.enterFailedLocked(a, d)
		return
	}
	a.setState(Stopped)
	m.afterStopLocked(a, "crash", keepsRunning(a))
}

// enterFailedLocked moves a to failed for d, or forgets it if it was
// removed.
func (m *Manager) enterFailedLocked(a *app, d time.Duration) {
	if a.removed || m.closed {
		a.setState(Stopped)
		m.afterStopLocked(a, "", false)
		return
	}
	a.backoffUntil = time.Now().Add(d)
	a.setState(Failed)
	m.armBackoffLocked(a, d)
}

// finishStopLocked records the end of an instance that was asked to stop.
func (m *Manager) finishStopLocked(a *app, in *instance, stopErr error, tail string) {
	a.dropInstance(in)
	if stopErr != nil {
		m.log.Warn("stopping app", "app", a.name, "err", stopErr)
	}
	if in.startErr != nil {
		// Stopped because it did not get ready in time.
		m.failStartLocked(a, in, in.startErr, tail)
		return
	}
	attrs := instAttrs(a, in, []any{"app", a.name, "reason", in.stopReason})
	if in.proc != nil {
		attrs = append(attrs, "pid", in.proc.Pid())
	}
	if !in.readyAt.IsZero() {
		a.failures = 0 // ran until we stopped it: not crash-looping
		attrs = append(attrs, "uptime", time.Since(in.readyAt))
	}
	if m.cfg.Events != nil {
		m.cfg.Events.AppStopped(a.name, in.stopReason)
	}
	if a.state != Stopping || len(a.insts) > 0 {
		// Stopped alone while the app runs on, or the app waits for its
		// other instances to be gone.
		m.log.Info("app instance stopped", attrs...)
		return
	}
	m.log.Info("app stopped", attrs...)
	m.logRefusedLocked(a)
	a.setState(Stopped)
	restart := a.restartAfterStop
	a.restartAfterStop = false
	m.afterStopLocked(a, a.restartReason, restart)
}

// afterStopLocked follows a move to stopped: forget a removed app, or start
// again when asked to.
func (m *Manager) afterStopLocked(a *app, reason string, restart bool) {
	if a.removed {
		m.forgetLocked(a)
		m.disarmIdleLocked(a)
		m.disarmBackoffLocked(a)
		return
	}
	if restart && !m.closed {
		a.restarts++
		a.restartReason = ""
		m.beginStartLocked(a, reason)
	}
}
