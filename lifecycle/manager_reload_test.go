package lifecycle

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

// Hot reload as the Manager sees it: Apply with a new *Spec for a running app.

func TestApplyChangedCommandRestartsAndHeldConnectionsAreServedByTheNewProcess(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web")
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("web")
	release()
	old := h.status("web")

	// The new command starts slowly, so that the wakes below are held.
	changed := *spec
	changed.Command = append([]string{h.bin}, "-delay", "200ms")
	h.m.Apply([]*appfile.Spec{&changed})
	if st := h.status("web"); st.State != Stopping {
		t.Fatalf("right after the reload: %s, want stopping", fmtStatus(st))
	}
	const waiters = 4
	var wg sync.WaitGroup
	ups := make([]string, waiters)
	for i := range waiters {
		wg.Go(func() {
			up, release := h.wake("web")
			defer release()
			if got := echo(t, up, "held"); got != "held" {
				t.Errorf("echo through a held wake = %q", got)
			}
			ups[i] = up.String()
		})
	}
	wg.Wait()
	st := h.status("web")
	if st.Pid == old.Pid || st.Starts != 2 || st.Restarts != 1 {
		t.Fatalf("after the command change: %s, old %s", fmtStatus(st), fmtStatus(old))
	}
	for _, up := range ups {
		if up != st.Upstream {
			t.Fatalf("a held wake got upstream %s, the new process is on %s", up, st.Upstream)
		}
	}
	if testutil.ProcessAlive(old.Pid) {
		t.Fatalf("old process %d alive after the restart", old.Pid)
	}
}

func TestApplyChangedProxyProtocolRestartsRunningApp(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web")
	h.m.Apply([]*appfile.Spec{spec})
	_, release := h.wake("web")
	release()
	old := h.status("web").Pid
	changed := *spec
	changed.ProxyProtocol = "v2" // the program must now expect a header
	h.m.Apply([]*appfile.Spec{&changed})
	st := h.waitState("web", Ready)
	if st.Pid == old || st.Restarts != 1 {
		t.Fatalf("after a proxy_protocol change: %s, old pid %d", fmtStatus(st), old)
	}
}

func TestApplyEqualCopyWakesNoWaiter(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("slow", "-mode", "sleep") // never ready
	h.m.Apply([]*appfile.Spec{spec})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { _, _, err := h.m.Wake(ctx, "slow"); errc <- err }()
	testutil.Eventually(t, mgrWait, func() bool { return h.status("slow").Pending == 1 }, "wake not pending")
	h.m.mu.Lock()
	changed := h.m.apps["slow"].changed
	h.m.mu.Unlock()
	same := *spec
	h.m.Apply([]*appfile.Spec{&same})
	select {
	case <-changed:
		t.Fatal("applying an equal spec woke the waiters")
	default:
	}
	if st := h.status("slow"); st.State != Starting || st.Starts != 1 {
		t.Fatalf("after an equal spec: %s", fmtStatus(st))
	}
	cancel()
	wantErr(t, <-errc, context.Canceled)
}

func TestApplyShorterStartTimeoutBoundsCurrentWaiters(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.BackoffMin, c.BackoffMax = time.Hour, time.Hour })
	spec := h.spec("slow", "-mode", "sleep") // never ready
	spec.StartTimeout = time.Hour
	h.m.Apply([]*appfile.Spec{spec})
	errc := make(chan error, 1)
	go func() { _, _, err := h.m.Wake(context.Background(), "slow"); errc <- err }()
	testutil.Eventually(t, mgrWait, func() bool { return h.status("slow").Pending == 1 }, "wake not pending")
	changed := *spec
	changed.StartTimeout = 100 * time.Millisecond
	h.m.Apply([]*appfile.Spec{&changed})
	select {
	case err := <-errc:
		wantErr(t, err, ErrStartTimeout)
	case <-time.After(mgrWait):
		t.Fatal("a waiter held past the new start_timeout")
	}
	if st := h.status("slow"); st.Restarts != 0 || st.Starts != 1 {
		t.Fatalf("a start_timeout change restarted the app: %s", fmtStatus(st))
	}
}

func TestApplyLowerMaxPendingRefusesNewWaitersAndKeepsHeldOnes(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("slow", "-mode", "sleep") // never ready
	spec.MaxPending = 10
	h.m.Apply([]*appfile.Spec{spec})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { _, _, _ = h.m.Wake(ctx, "slow") })
	}
	testutil.Eventually(t, mgrWait, func() bool { return h.status("slow").Pending == 3 }, "waiters not pending")
	changed := *spec
	changed.MaxPending = 2
	h.m.Apply([]*appfile.Spec{&changed})
	_, _, err := h.m.Wake(context.Background(), "slow")
	wantErr(t, err, ErrTooManyPending)
	if st := h.status("slow"); st.Pending != 3 {
		t.Fatalf("held waiters after lowering max_pending: %s", fmtStatus(st))
	}
	cancel()
	wg.Wait()
}
