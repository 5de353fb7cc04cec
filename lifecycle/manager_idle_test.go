package lifecycle

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

// A passive lease (a source outside wake_from) is served by a running app
// but keeps it up no longer than its idle_timeout, and wakes nothing.
func TestPassiveLeaseNeitherWakesNorKeepsTheAppUp(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web", "-listen", "127.0.0.1:${PORT}")
	spec.IdleTimeout = 300 * time.Millisecond
	h.m.Apply([]*appfile.Spec{spec})

	if _, _, ok := h.m.TryWakePassive("web"); ok {
		t.Fatal("a passive lease of a stopped app succeeded")
	}
	if st := h.status("web"); st.State != Stopped || st.Starts != 0 {
		t.Fatalf("a passive lease woke the app: %s", fmtStatus(st))
	}
	up, release := h.wake("web")
	release()
	pup, prelease, ok := h.m.TryWakePassive("web")
	if !ok || pup != up {
		t.Fatalf("passive lease of a ready app: %v, %v; want %v", pup, ok, up)
	}
	defer prelease()
	if got := echo(t, pup, "hi"); got != "hi" {
		t.Fatalf("echo = %q", got)
	}
	if st := h.status("web"); st.Connections != 1 {
		t.Errorf("status connections = %d, want the passive lease counted", st.Connections)
	}
	// Open, yet the app stops when idle_timeout has passed.
	h.waitState("web", Stopped)
	h.waitLog(`msg="app stopped"`, "app=web", "reason=idle")
}

// idle_when: traffic: an open lease keeps the app up only while Traffic
// says bytes move; with connections (the default) it keeps it up anyway.
func TestIdleWhenTrafficStopsAnAppWhoseOpenConnectionIsQuiet(t *testing.T) {
	h := newHarness(t)
	const idle = 600 * time.Millisecond
	quiet := h.spec("quiet", "-listen", "127.0.0.1:${PORT}")
	quiet.IdleTimeout, quiet.IdleWhen = idle, appfile.IdleNoTraffic
	chatty := h.spec("chatty", "-listen", "127.0.0.1:${PORT}")
	chatty.IdleTimeout, chatty.IdleWhen = idle, appfile.IdleNoTraffic
	conns := h.spec("conns", "-listen", "127.0.0.1:${PORT}")
	conns.IdleTimeout = idle
	h.m.Apply([]*appfile.Spec{quiet, chatty, conns})

	_, releaseQuiet := h.wake("quiet")
	defer releaseQuiet()
	_, releaseConns := h.wake("conns")
	defer releaseConns()
	// Bytes move on chatty's connection from its wake on, every 50ms.
	up, releaseChatty := h.wake("chatty")
	defer releaseChatty()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			h.m.Traffic("chatty", up)
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond): // the traffic's pace, not synchronisation
			}
		}
	}()
	h.waitState("quiet", Stopped)
	h.waitLog(`msg="app stopped"`, "app=quiet", "reason=idle")
	<-time.After(2 * idle) // chatty and conns stay up this long at least
	close(stop)
	<-done
	if st := h.status("chatty"); st.State != Ready {
		t.Errorf("chatty: %s; want ready while bytes move", fmtStatus(st))
	}
	if st := h.status("conns"); st.State != Ready {
		t.Errorf("conns: %s; want ready while its connection is open", fmtStatus(st))
	}
}

// freezeSpec is an echo app frozen after 200ms idle, whose grandchild's pid
// goes to the returned file.
func (h *harness) freezeSpec(name string) (*appfile.Spec, string) {
	grand := filepath.Join(h.t.TempDir(), "grandchild")
	spec := h.spec(name, "-listen", "127.0.0.1:${PORT}", "-grandchild", grand)
	spec.IdleTimeout, spec.IdleAction = 200*time.Millisecond, appfile.IdleFreeze
	return spec, grand
}

// waitStopped waits until every one of pids is stopped (T) or not.
func waitStopped(t *testing.T, stopped bool, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		testutil.Eventually(t, mgrWait, func() bool { return testutil.Frozen(pid) == stopped },
			"pid %d in state %q, want stopped=%v", pid, testutil.ProcState(pid), stopped)
	}
}

func TestFreezeSuspendsEveryProcessAndAWakeThawsTheSameOne(t *testing.T) {
	h := newHarness(t)
	spec, grand := h.freezeSpec("web")
	h.m.Apply([]*appfile.Spec{spec})
	up, release := h.wake("web")
	pid := h.status("web").Pid
	gpid := testutil.ReadPidFile(t, grand)
	release()

	st := h.waitState("web", Frozen)
	if st.Pid != pid || len(st.Instances) != 1 || st.Instances[0].State != Frozen {
		t.Fatalf("frozen: %s", fmtStatus(st))
	}
	waitStopped(t, true, pid, gpid)
	h.waitLog(`msg="app frozen"`, "app=web")
	// A source outside wake_from may not thaw it.
	if _, _, ok := h.m.TryWakePassive("web"); ok {
		t.Fatal("a passive lease of a frozen app succeeded")
	}
	if st := h.status("web"); st.State != Frozen {
		t.Fatalf("after a passive lease: %s", fmtStatus(st))
	}

	// Each way of waking thaws the same process: a connection, one
	// leased on the thread that accepted it, a cron wake, a manual start.
	wakes := []func(){
		func() {
			up2, release := h.wake("web")
			defer release()
			if up2 != up || echo(t, up2, "thawed") != "thawed" {
				t.Fatalf("the connection after the freeze: %v, want %v serving", up2, up)
			}
		},
		func() {
			// Refused only while the freeze call still runs.
			var (
				up2     netip.AddrPort
				release func()
				ok      bool
			)
			testutil.Eventually(t, mgrWait, func() bool {
				up2, release, ok = h.m.TryWake("web")
				return ok
			}, "TryWake never leased the frozen app: %s", fmtStatus(h.status("web")))
			defer release()
			if st := h.status("web"); st.State != Ready {
				t.Fatalf("TryWake leased %s", fmtStatus(st))
			}
			if up2 != up || echo(t, up2, "at once") != "at once" {
				t.Fatalf("the connection TryWake leased: %v, want %v serving", up2, up)
			}
		},
		func() {
			if err := h.m.KeepUp("web", time.Now()); err != nil {
				t.Fatal(err)
			}
			h.waitState("web", Ready)
		},
		func() {
			ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
			defer cancel()
			if err := h.m.Start(ctx, "web", "manual"); err != nil {
				t.Fatal(err)
			}
		},
	}
	for i, wake := range wakes {
		if i > 0 {
			h.waitState("web", Frozen)
			waitStopped(t, true, pid, gpid)
		}
		wake()
		st := h.status("web")
		if st.State != Ready || st.Pid != pid || st.Starts != 1 {
			t.Fatalf("wake %d: %s; want ready, the same pid %d, one start", i, fmtStatus(st), pid)
		}
		waitStopped(t, false, pid, gpid)
	}
	h.waitLog(`msg="app thawed"`, "app=web", "reason=cron")
}

func TestStopOfAFrozenAppThawsItSoItsStopSignalIsHandled(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web", "-listen", "127.0.0.1:${PORT}")
	spec.IdleTimeout, spec.IdleAction = 200*time.Millisecond, appfile.IdleFreeze
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("web")
	pid := h.status("web").Pid
	release()
	h.waitState("web", Frozen)
	waitStopped(t, true, pid)

	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	began := time.Now()
	if err := h.m.Stop(ctx, "web", "manual"); err != nil {
		t.Fatal(err)
	}
	// SIGTERM, handled at once: not the SIGKILL after stop_timeout that a
	// program still frozen would need.
	if took := time.Since(began); took >= spec.StopTimeout {
		t.Errorf("stop took %v, the stop_timeout: the program was not thawed", took)
	}
	if st := h.status("web"); st.State != Stopped || testutil.ProcessAlive(pid) {
		t.Fatalf("after stop: %s, pid %d alive: %v", fmtStatus(st), pid, testutil.ProcessAlive(pid))
	}
	if line := h.logLine("stop timeout over"); line != "" {
		t.Errorf("the stop needed SIGKILL: %s", line)
	}
}

// gatedThaw is a Driver whose processes' Thaw waits, once it has said so
// on entered, until gate is closed: a stop can then come while a
// connection thaws the app.
type gatedThaw struct {
	Driver
	entered chan struct{}
	gate    chan struct{}
}

func (d gatedThaw) Start(ctx context.Context, req StartRequest) (Process, error) {
	p, err := d.Driver.Start(ctx, req)
	if err != nil {
		return nil, err
	}
	return gatedThawProcess{p, p.(Freezer), d}, nil
}

type gatedThawProcess struct {
	Process
	fz Freezer
	d  gatedThaw
}

func (p gatedThawProcess) Freeze(ctx context.Context) error { return p.fz.Freeze(ctx) }

func (p gatedThawProcess) Thaw(ctx context.Context) error {
	select {
	case p.d.entered <- struct{}{}:
	default:
	}
	<-p.d.gate
	return p.fz.Thaw(ctx)
}

// A stop that comes while a connection thaws a frozen app waits for the
// thaw, so that the program handles its SIGTERM; the connection, woken
// meanwhile, is served by a new start.
func TestStopOfAFrozenAppWhileAConnectionThawsIt(t *testing.T) {
	gate := gatedThaw{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	h := newHarness(t, func(c *Config) { gate.Driver = c.Driver; c.Driver = gate })
	spec := h.spec("web", "-listen", "127.0.0.1:${PORT}")
	spec.IdleTimeout, spec.IdleAction = 200*time.Millisecond, appfile.IdleFreeze
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("web")
	release()
	pid := h.waitState("web", Frozen).Pid
	waitStopped(t, true, pid)

	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	type lease struct {
		up      netip.AddrPort
		release func()
		err     error
	}
	woke := make(chan lease, 1)
	go func() {
		up, release, err := h.m.Wake(ctx, "web")
		woke <- lease{up, release, err}
	}()
	select {
	case <-gate.entered:
	case <-ctx.Done():
		t.Fatal("the connection never thawed the app")
	}
	stopped := make(chan error, 1)
	began := time.Now()
	go func() { stopped <- h.m.Stop(ctx, "web", "manual") }()
	h.waitState("web", Stopping)
	close(gate.gate)
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v", err)
	}
	if took := time.Since(began); took >= spec.StopTimeout {
		t.Errorf("stop took %v, the stop_timeout: the program was not thawed", took)
	}
	if line := h.logLine("stop timeout over"); line != "" {
		t.Errorf("the stop needed SIGKILL: %s", line)
	}
	if testutil.ProcessAlive(pid) {
		t.Errorf("pid %d alive after the stop", pid)
	}
	l := <-woke
	if l.err != nil {
		t.Fatalf("the connection: %v", l.err)
	}
	defer l.release()
	if st := h.status("web"); st.State != Ready || st.Pid == pid || st.Starts != 2 {
		t.Fatalf("after the stop: %s; want ready, started afresh", fmtStatus(st))
	}
	if got := echo(t, l.up, "after the stop"); got != "after the stop" {
		t.Errorf("the new program echoed %q", got)
	}
}

// slowFreeze is a Driver whose processes' Freeze, once they are frozen,
// waits until its context ends, as it would for a kernel slow to report
// the freeze done.
type slowFreeze struct{ Driver }

func (d slowFreeze) Start(ctx context.Context, req StartRequest) (Process, error) {
	p, err := d.Driver.Start(ctx, req)
	if err != nil {
		return nil, err
	}
	return slowFreezeProcess{p, p.(QuickThawer)}, nil
}

type slowFreezeProcess struct {
	Process
	fz QuickThawer
}

func (p slowFreezeProcess) Freeze(ctx context.Context) error {
	if err := p.fz.Freeze(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

func (p slowFreezeProcess) Thaw(ctx context.Context) error { return p.fz.Thaw(ctx) }
func (p slowFreezeProcess) ThawNow() error                 { return p.fz.ThawNow() }

// A connection to an app whose freeze is still waiting for the kernel's
// word thaws it at once: the freeze's wait is cut short, not failed.
func TestAConnectionDuringAFreezeCutsItsWaitShort(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Driver = slowFreeze{c.Driver} })
	spec := h.spec("web", "-listen", "127.0.0.1:${PORT}")
	spec.IdleTimeout, spec.IdleAction = 200*time.Millisecond, appfile.IdleFreeze
	h.m.Apply([]*appfile.Spec{spec})
	up, release := h.wake("web")
	pid := h.status("web").Pid
	release()
	h.waitState("web", Frozen)
	waitStopped(t, true, pid)

	// The freeze call waits for freezeCallTimeout (30s), beyond mgrWait.
	up2, release := h.wake("web")
	defer release()
	if st := h.status("web"); st.State != Ready || st.Pid != pid || up2 != up {
		t.Fatalf("after the wake: %s, %v; want ready, pid %d at %v", fmtStatus(st), up2, pid, up)
	}
	if got := echo(t, up2, "thawed"); got != "thawed" {
		t.Fatalf("the thawed program echoed %q", got)
	}
	if line := h.logLine("freezing app failed"); line != "" {
		t.Errorf("the cut freeze was taken for a failure: %s", line)
	}
}

func TestFreezeTimeoutStopsAnAppFrozenThatLong(t *testing.T) {
	h := newHarness(t)
	spec, _ := h.freezeSpec("web")
	spec.FreezeTimeout = 300 * time.Millisecond
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("web")
	pid := h.status("web").Pid
	release()
	h.waitState("web", Frozen)
	frozen := time.Now()
	h.waitState("web", Stopped)
	if time.Since(frozen) < spec.FreezeTimeout/2 {
		t.Errorf("stopped %v after it froze, before freeze_timeout %v", time.Since(frozen), spec.FreezeTimeout)
	}
	if testutil.ProcessAlive(pid) {
		t.Errorf("pid %d alive after the stop", pid)
	}
	h.waitLog(`msg="app frozen for freeze_timeout, stopping it"`, "app=web")
	h.waitLog(`msg="app stopped"`, "app=web", "reason=idle")
}

func TestMemoryUsageReportsFrozenApps(t *testing.T) {
	h := newHarness(t)
	spec, _ := h.freezeSpec("web")
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("web")
	release()
	h.waitState("web", Frozen)
	usage := h.m.MemoryUsage()
	if len(usage) != 1 || !usage[0].Frozen || usage[0].FrozenSince.IsZero() || usage[0].Pid == 0 {
		t.Fatalf("MemoryUsage = %+v; want web frozen, with its pid", usage)
	}
}

// A reload that drops idle_action: freeze thaws a frozen app, which then
// stops when idle like any other; one that adds freeze_timeout arms it.
func TestReloadOfAFrozenAppAppliesTheNewIdleKeys(t *testing.T) {
	h := newHarness(t)
	spec, _ := h.freezeSpec("web")
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("web")
	release()
	h.waitState("web", Frozen)

	timed := *spec
	timed.FreezeTimeout = 200 * time.Millisecond
	h.m.Apply([]*appfile.Spec{&timed})
	h.waitState("web", Stopped)
	h.waitLog(`msg="app frozen for freeze_timeout, stopping it"`, "app=web")

	_, release = h.wake("web")
	pid := h.status("web").Pid
	release()
	h.waitState("web", Frozen)
	stop := *spec
	stop.IdleAction = appfile.IdleStop
	h.m.Apply([]*appfile.Spec{&stop})
	h.waitLog(`msg="app thawed"`, "app=web", "reason=reload")
	h.waitState("web", Stopped)
	if testutil.ProcessAlive(pid) {
		t.Errorf("pid %d alive after the idle stop", pid)
	}
}
