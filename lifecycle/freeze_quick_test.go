package lifecycle

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

// countedThaw is a Driver whose processes count their Freeze, Thaw and
// ThawNow calls; ThawNow call failNth (from 1, 0 for none) fails, and
// Thaw waits until gate is closed. With nowGate, ThawNow says so on
// nowEntered and waits until nowGate is closed.
type countedThaw struct {
	Driver
	failNth    int32
	gate       chan struct{}
	nowEntered chan struct{}
	nowGate    chan struct{}
	froze      atomic.Int32
	thawNows   atomic.Int32
	thaws      atomic.Int32
	mu         sync.Mutex
	failed     int // pid whose ThawNow failed
	opened     sync.Once
}

// open closes gate once.
func (d *countedThaw) open() { d.opened.Do(func() { close(d.gate) }) }

func (d *countedThaw) Start(ctx context.Context, req StartRequest) (Process, error) {
	p, err := d.Driver.Start(ctx, req)
	if err != nil {
		return nil, err
	}
	return countedThawProcess{p, p.(QuickThawer), d}, nil
}

type countedThawProcess struct {
	Process
	fz QuickThawer
	d  *countedThaw
}

func (p countedThawProcess) Freeze(ctx context.Context) error {
	err := p.fz.Freeze(ctx)
	if err == nil {
		p.d.froze.Add(1)
	}
	return err
}

func (p countedThawProcess) Thaw(ctx context.Context) error {
	p.d.thaws.Add(1)
	select {
	case <-p.d.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return p.fz.Thaw(ctx)
}

func (p countedThawProcess) ThawNow() error {
	if p.d.nowGate != nil {
		p.d.nowEntered <- struct{}{}
		<-p.d.nowGate
	}
	if p.d.thawNows.Add(1) == p.d.failNth {
		p.d.mu.Lock()
		p.d.failed = p.Pid()
		p.d.mu.Unlock()
		return errors.New("test: ThawNow fails")
	}
	return p.fz.ThawNow()
}

// frozenScaled starts app web with two instances and freezes both, as
// freezeLocked does; the idle stop itself freezes only the last instance
// (it retires the others first), so a test must ask for more. It returns
// the instances' pids once both Freeze calls returned.
func frozenScaled(t *testing.T, d *countedThaw) (*harness, []int) {
	h := newHarness(t, func(c *Config) { d.Driver = c.Driver; c.Driver = d })
	t.Cleanup(d.open) // before the harness's shutdown
	spec := h.scaled("web", appfile.Scale{Max: 2, TargetConnections: 1}, "-listen", "127.0.0.1:${PORT}")
	spec.IdleAction = appfile.IdleFreeze
	h.m.Apply([]*appfile.Spec{spec})
	_, r0 := h.wake("web")
	_, r1 := h.wake("web") // beyond the target: instance 1 starts
	st := h.waitInstances("web", 2)
	r0()
	r1()
	h.m.mu.Lock()
	a := h.m.apps["web"]
	ok := h.m.canFreezeLocked(a)
	if ok {
		h.m.freezeLocked(a)
	}
	h.m.mu.Unlock()
	if !ok {
		t.Fatalf("web cannot be frozen: %s", fmtStatus(st))
	}
	pids := []int{st.Instances[0].Pid, st.Instances[1].Pid}
	waitStopped(t, true, pids...)
	testutil.Eventually(t, mgrWait, func() bool { return d.froze.Load() == 2 },
		"%d Freeze calls returned, want 2", d.froze.Load())
	return h, pids
}

// A connection to a frozen app of two instances thaws both at once, on
// its own thread (ThawNow), and is leased the app ready.
func TestTryWakeThawsEveryInstanceOfAFrozenScaledApp(t *testing.T) {
	d := &countedThaw{gate: make(chan struct{})}
	h, pids := frozenScaled(t, d)
	// Refused only while a freeze call still holds its instance.
	var release func()
	testutil.Eventually(t, mgrWait, func() bool {
		var ok bool
		_, release, ok = h.m.TryWake("web")
		return ok
	}, "TryWake never leased the frozen app: %s", fmtStatus(h.status("web")))
	defer release()
	st := h.status("web")
	if st.State != Ready || len(st.Instances) != 2 || st.Instances[0].State != Ready || st.Instances[1].State != Ready {
		t.Fatalf("after TryWake: %s %+v; want ready, both instances ready", fmtStatus(st), st.Instances)
	}
	if n, m := d.thawNows.Load(), d.thaws.Load(); n != 2 || m != 0 {
		t.Errorf("%d ThawNow and %d Thaw calls, want 2 and 0", n, m)
	}
	waitStopped(t, false, pids...)
}

// When ThawNow fails for the second instance, the first runs again: the
// app says so, and is thawed by the slow path even though no connection
// waits for it (the client went away).
func TestAFailedQuickThawOfOneInstanceHandsTheAppToTheSlowThaw(t *testing.T) {
	d := &countedThaw{failNth: 2, gate: make(chan struct{})}
	h, pids := frozenScaled(t, d)
	testutil.Eventually(t, mgrWait, func() bool {
		if _, release, ok := h.m.TryWake("web"); ok {
			release()
			t.Fatalf("TryWake leased the app although a ThawNow failed: %s", fmtStatus(h.status("web")))
		}
		return d.thawNows.Load() >= 2
	}, "TryWake never thawed the frozen app: %s", fmtStatus(h.status("web")))
	d.mu.Lock()
	failed := d.failed
	d.mu.Unlock()

	// The slow thaw of the failed instance waits at the gate: each
	// instance reads what its processes are.
	testutil.Eventually(t, mgrWait, func() bool { return d.thaws.Load() >= 1 },
		"the slow path never thawed the app: %s", fmtStatus(h.status("web")))
	st := h.status("web")
	if st.State != Frozen || len(st.Instances) != 2 {
		t.Fatalf("while the slow thaw waits: %s %+v; want frozen (thawing), two instances", fmtStatus(st), st.Instances)
	}
	for _, in := range st.Instances {
		want := Ready
		if in.Pid == failed {
			want = Frozen
		}
		if in.State != want {
			t.Errorf("instance %d (pid %d, failed %d): %s, want %s", in.Index, in.Pid, failed, in.State, want)
		}
		waitStopped(t, want == Frozen, in.Pid)
	}
	if line := h.logLine("thawing app at once failed", "app=web", "test: ThawNow fails"); line == "" {
		t.Error("no log line for the failed ThawNow")
	}

	d.open()
	st = h.waitState("web", Ready)
	waitStopped(t, false, pids...)
	if n := d.thaws.Load(); n != 1 {
		t.Errorf("%d Thaw calls, want 1 (the failed instance's)", n)
	}
	if st.Instances[0].State != Ready || st.Instances[1].State != Ready {
		t.Errorf("after the slow thaw: %+v", st.Instances)
	}
	h.waitLog(`msg="app thawed"`, "app=web", "reason=connection")
}

// The Manager's lock is free while ThawNow runs (a cgroup.freeze write
// may wait for the kernel's cgroup_mutex): status, other apps and other
// connections go on, and see the app thawing.
func TestTryWakeLeavesTheManagerUnlockedDuringThawNow(t *testing.T) {
	d := &countedThaw{gate: make(chan struct{}), nowEntered: make(chan struct{}, 1), nowGate: make(chan struct{})}
	h := newHarness(t, func(c *Config) { d.Driver = c.Driver; c.Driver = d })
	t.Cleanup(d.open)
	spec := h.spec("web", "-listen", "127.0.0.1:${PORT}")
	spec.IdleTimeout, spec.IdleAction = 200*time.Millisecond, appfile.IdleFreeze
	h.m.Apply([]*appfile.Spec{spec})
	up, release := h.wake("web")
	release()
	pid := h.waitState("web", Frozen).Pid
	waitStopped(t, true, pid)
	testutil.Eventually(t, mgrWait, func() bool { return d.froze.Load() == 1 },
		"the Freeze call never returned")

	type lease struct {
		up      netip.AddrPort
		release func()
		ok      bool
	}
	woke := make(chan lease, 1)
	go func() {
		up, release, ok := h.m.TryWake("web")
		woke <- lease{up, release, ok}
	}()
	select {
	case <-d.nowEntered:
	case <-time.After(mgrWait):
		t.Fatal("TryWake never called ThawNow")
	}
	statused := make(chan AppStatus, 1)
	go func() { statused <- h.status("web") }()
	select {
	case st := <-statused:
		if st.State != Frozen {
			t.Errorf("during ThawNow: %s, want frozen (thawing)", fmtStatus(st))
		}
	case <-time.After(mgrWait):
		close(d.nowGate)
		t.Fatal("Status waited for ThawNow: the Manager's lock is held")
	}
	if _, _, ok := h.m.TryWake("web"); ok {
		t.Error("a second TryWake leased the app during the first one's ThawNow")
	}
	close(d.nowGate)
	l := <-woke
	if !l.ok {
		t.Fatalf("TryWake did not lease the app: %s", fmtStatus(h.status("web")))
	}
	defer l.release()
	if st := h.status("web"); st.State != Ready || st.Pid != pid || l.up != up {
		t.Fatalf("after TryWake: %s, %v; want ready, pid %d at %v", fmtStatus(st), l.up, pid, up)
	}
	waitStopped(t, false, pid)
	if got := echo(t, l.up, "thawed"); got != "thawed" {
		t.Errorf("echo %q", got)
	}
}
