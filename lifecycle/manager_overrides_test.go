package lifecycle

import (
	"context"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

// A pinned app starts at once and stays up through many idle timeouts
// with no connection; once unpinned it stops after its idle_timeout.
func TestPinKeepsAnAppUpUntilUnpinned(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web")
	spec.IdleTimeout = 50 * time.Millisecond
	h.m.Apply([]*appfile.Spec{spec})
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	if err := h.m.Pin(ctx, "web", time.Time{}); err != nil {
		t.Fatal(err)
	}
	st := h.status("web")
	if st.State != Ready || !st.Pinned || !st.PinnedUntil.IsZero() {
		t.Fatalf("after Pin: %s pinned %v until %v", fmtStatus(st), st.Pinned, st.PinnedUntil)
	}
	<-time.After(10 * spec.IdleTimeout)
	if got := h.status("web"); got.State != Ready || got.Pid != st.Pid {
		t.Fatalf("pinned app after 10 idle timeouts: %s, want ready with pid %d", fmtStatus(got), st.Pid)
	}
	if err := h.m.Unpin("web"); err != nil {
		t.Fatal(err)
	}
	unpinned := time.Now()
	h.waitState("web", Stopped)
	if took := time.Since(unpinned); took < spec.IdleTimeout {
		t.Fatalf("stopped %v after Unpin, before its idle_timeout", took)
	}
	if got := h.m.Overrides(); len(got) != 0 {
		t.Fatalf("overrides after Unpin: %+v", got)
	}
}

// A pin with an end keeps the app up until then; then its idle countdown
// runs, and the pin no longer shows.
func TestPinForAWhileEnds(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web")
	spec.IdleTimeout = 50 * time.Millisecond
	h.m.Apply([]*appfile.Spec{spec})
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	until := time.Now().Add(time.Second)
	if err := h.m.Pin(ctx, "web", until); err != nil {
		t.Fatal(err)
	}
	if st := h.status("web"); time.Now().Before(until) && (!st.Pinned || !st.PinnedUntil.Equal(until)) {
		t.Fatalf("pinned %v until %v, want until %v", st.Pinned, st.PinnedUntil, until)
	}
	h.waitState("web", Stopped)
	if now := time.Now(); now.Before(until.Add(spec.IdleTimeout)) {
		t.Fatalf("stopped at %v, before the pin's end %v plus idle_timeout", now, until)
	}
	if st := h.status("web"); st.Pinned {
		t.Fatal("still shown pinned after the pin's end")
	}
}

// A pinned on-demand app that crashes is started again, as an always app.
func TestPinnedAppIsStartedAgainAfterACrash(t *testing.T) {
	h := newHarness(t)
	h.m.Apply([]*appfile.Spec{h.spec("web", "-crash-after", "100ms")})
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	if err := h.m.Pin(ctx, "web", time.Time{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, mgrWait, func() bool { return h.status("web").Starts >= 2 }, "pinned app not started again after its crash: %s", fmtStatus(h.status("web")))
}

// A disabled app is stopped, refuses wakes, connections and manual starts
// alike, cannot be pinned, and serves again once enabled.
func TestDisableStopsAndRefusesWakesUntilEnabled(t *testing.T) {
	h := newHarness(t)
	h.m.Apply([]*appfile.Spec{h.spec("web")})
	_, release := h.wake("web")
	release()
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	if err := h.m.Disable(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if st := h.status("web"); st.State != Stopped || !st.Disabled {
		t.Fatalf("after Disable: %s disabled %v", fmtStatus(st), st.Disabled)
	}
	h.waitLog(`msg="app stopped"`, "app=web", "reason=disabled")
	_, _, err := h.m.Wake(ctx, "web")
	wantErr(t, err, ErrDisabled)
	wantErr(t, h.m.Start(ctx, "web", "manual"), ErrDisabled)
	wantErr(t, h.m.Pin(ctx, "web", time.Time{}), ErrDisabled)
	wantErr(t, h.m.KeepUp("web", time.Now().Add(time.Minute)), ErrDisabled)
	if err := h.m.Enable("web"); err != nil {
		t.Fatal(err)
	}
	up, release := h.wake("web")
	defer release()
	if got := echo(t, up, "back"); got != "back" {
		t.Fatalf("echo after Enable = %q", got)
	}
}

// Overrides restored before the first Apply (a daemon restart): a
// disabled persistent app does not start at boot, a pinned on-demand app
// does; an expired pin is dropped.
func TestRestoredOverridesApplyAtBoot(t *testing.T) {
	h := newHarness(t)
	h.m.SetOverrides([]Override{
		{App: "db", Disabled: true},
		{App: "web", Pinned: true},
		{App: "old", Pinned: true, PinnedUntil: time.Now().Add(-time.Minute)},
	})
	db := h.spec("db")
	db.Mode = appfile.Persistent
	h.m.Apply([]*appfile.Spec{db, h.spec("web"), h.spec("old")})
	h.waitState("web", Ready)
	if st := h.status("db"); st.State != Stopped || !st.Disabled {
		t.Fatalf("disabled persistent app at boot: %s", fmtStatus(st))
	}
	if st := h.status("old"); st.State != Stopped || st.Pinned {
		t.Fatalf("app with an expired pin at boot: %s pinned %v", fmtStatus(st), st.Pinned)
	}
	got := h.m.Overrides()
	if len(got) != 2 || got[0].App != "db" || !got[0].Disabled || got[1].App != "web" || !got[1].Pinned {
		t.Fatalf("Overrides() = %+v", got)
	}
}
