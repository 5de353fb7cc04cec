package lifecycle

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

func TestApplyUnchangedSpecLeavesAppAlone(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web")
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("web")
	defer release()
	before := h.status("web")
	h.m.Apply([]*appfile.Spec{spec})
	// An equal copy is unchanged too.
	same := *spec
	h.m.Apply([]*appfile.Spec{&same})
	if st := h.status("web"); st.Pid != before.Pid || st.Starts != 1 || st.State != Ready {
		t.Fatalf("after re-applying the same spec: %s, was %s", fmtStatus(st), fmtStatus(before))
	}
}

func TestApplySettingsApplyWithoutRestart(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web")
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("web")
	release()
	pid := h.status("web").Pid

	changed := *spec
	changed.IdleTimeout = 50 * time.Millisecond
	changed.StartTimeout = time.Minute
	changed.MaxPending = 7
	h.m.Apply([]*appfile.Spec{&changed})
	if st := h.status("web"); st.Pid != pid || st.Starts != 1 {
		t.Fatalf("settings change restarted the app: %s", fmtStatus(st))
	}
	// The shorter idle timeout applies to the running process at once.
	h.waitState("web", Stopped)
	h.waitLog(`msg="app stopped"`, "app=web", "reason=idle")
}

func TestApplyChangedCommandRestartsAndHeldWakeGetsNewProcess(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web", "-print-env", "GREETING")
	spec.Env = map[string]string{"GREETING": "one"}
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("web")
	release()
	old := h.status("web")

	changed := *spec
	changed.Env = map[string]string{"GREETING": "two"}
	h.m.Apply([]*appfile.Spec{&changed})
	// A wake right after the reload is served by the new process only.
	up2, release := h.wake("web")
	defer release()
	st := h.status("web")
	if st.Pid == old.Pid || st.Restarts != 1 || st.Starts != 2 || st.Upstream != up2.String() {
		t.Fatalf("after env change: %s, old %s", fmtStatus(st), fmtStatus(old))
	}
	if testutil.ProcessAlive(old.Pid) {
		t.Fatalf("old process %d alive after reload", old.Pid)
	}
	h.waitLog(`msg="app stopped"`, "app=web", "reason=reload")
	h.waitLog(`msg="app started"`, "app=web", "reason=reload")
}

func TestApplyRemovesApp(t *testing.T) {
	h := newHarness(t)
	h.m.Apply([]*appfile.Spec{h.spec("web"), h.spec("other")})
	_, release := h.wake("web")
	release()
	pid := h.status("web").Pid
	h.m.Apply([]*appfile.Spec{h.spec("other")})
	_, _, err := h.m.Wake(context.Background(), "web")
	wantErr(t, err, ErrUnknownApp)
	h.waitLog(`msg="app stopped"`, "app=web", "reason=removed")
	testutil.Eventually(t, mgrWait, func() bool { return !testutil.ProcessAlive(pid) }, "removed app's process %d alive", pid)
	if st := h.m.Status(); len(st) != 1 || st[0].Name != "other" {
		t.Fatalf("status after removal: %+v", st)
	}
}

func TestApplyReaddsAppWhileStopping(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web", "-ignore-term")
	spec.StopTimeout = 300 * time.Millisecond
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("web")
	release()
	old := h.status("web").Pid
	h.m.Apply(nil)
	h.m.Apply([]*appfile.Spec{spec})
	// Back in the configuration: a wake waits for the old process and is
	// served by a new one.
	up, release := h.wake("web")
	defer release()
	if got := echo(t, up, "back"); got != "back" {
		t.Fatalf("echo = %q", got)
	}
	if st := h.status("web"); st.Pid == old || testutil.ProcessAlive(old) {
		t.Fatalf("after re-adding: %s, old pid %d alive=%v", fmtStatus(st), old, testutil.ProcessAlive(old))
	}
}

func TestApplyModeChangeToPersistentStartsApp(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("svc")
	h.m.Apply([]*appfile.Spec{spec})
	if st := h.status("svc"); st.State != Stopped {
		t.Fatalf("on-demand app started at apply: %s", fmtStatus(st))
	}
	changed := *spec
	changed.Mode = appfile.Persistent
	h.m.Apply([]*appfile.Spec{&changed})
	st := h.waitState("svc", Ready)
	if st.Mode != appfile.Persistent || st.Restarts != 0 {
		t.Fatalf("after mode change: %s", fmtStatus(st))
	}
}

func TestApplyFixesFailedApp(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.BackoffMin, c.BackoffMax = time.Hour, time.Hour })
	spec := h.spec("web", "-crash")
	h.m.Apply([]*appfile.Spec{spec})
	_, _, err := h.m.Wake(context.Background(), "web")
	wantErr(t, err, ErrStartFailed)
	h.waitState("web", Failed)
	fixed := h.spec("web")
	h.m.Apply([]*appfile.Spec{fixed})
	// A changed command ends the backoff: it may be the fix.
	_, release := h.wake("web")
	release()
	if st := h.status("web"); st.State != Ready || st.Starts != 2 {
		t.Fatalf("after fixing: %s", fmtStatus(st))
	}
}

func TestRemoveDuringStartFailsWaiters(t *testing.T) {
	h := newHarness(t)
	h.m.Apply([]*appfile.Spec{h.spec("slow", "-mode", "sleep")})
	errc := make(chan error, 1)
	go func() {
		_, _, err := h.m.Wake(context.Background(), "slow")
		errc <- err
	}()
	testutil.Eventually(t, mgrWait, func() bool {
		st := h.status("slow")
		return st.Pending == 1 && st.Pid != 0
	}, "wake not pending")
	pid := h.status("slow").Pid
	h.m.Apply(nil)
	wantErr(t, <-errc, ErrUnknownApp)
	testutil.Eventually(t, mgrWait, func() bool { return !testutil.ProcessAlive(pid) }, "removed app's process %d alive", pid)
}

// forgettingDriver is a Driver that is an AppForgetter: it records the
// apps it is told to forget, and whether the process of watchPid was
// still alive when web was.
type forgettingDriver struct {
	Driver
	watchPid atomic.Int64
	mu       sync.Mutex
	forgot   []string
	alive    bool
}

func (d *forgettingDriver) ForgetApp(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.forgot = append(d.forgot, name)
	if pid := d.watchPid.Load(); name == "web" && pid > 0 && testutil.ProcessAlive(int(pid)) {
		d.alive = true
	}
}

func (d *forgettingDriver) forgotten() ([]string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.forgot), d.alive
}

// TestApplyRemovedAppIsForgottenByItsDriver: an app that leaves the
// configuration, running or stopped, is forgotten by its driver once its
// process is gone; one that stays is not.
func TestApplyRemovedAppIsForgottenByItsDriver(t *testing.T) {
	var fd *forgettingDriver
	h := newHarness(t, func(c *Config) {
		fd = &forgettingDriver{Driver: c.Driver}
		c.Driver = fd
	})
	h.m.Apply([]*appfile.Spec{h.spec("web"), h.spec("idle"), h.spec("other")})
	_, release := h.wake("web")
	release()
	fd.watchPid.Store(int64(h.status("web").Pid))
	h.m.Apply([]*appfile.Spec{h.spec("other")})
	testutil.Eventually(t, mgrWait, func() bool { f, _ := fd.forgotten(); return len(f) == 2 },
		"the removed apps not forgotten by their driver")
	f, alive := fd.forgotten()
	slices.Sort(f)
	if !slices.Equal(f, []string{"idle", "web"}) {
		t.Fatalf("forgotten %v, want idle and web", f)
	}
	if alive {
		t.Fatal("web forgotten while its process was alive")
	}
}
