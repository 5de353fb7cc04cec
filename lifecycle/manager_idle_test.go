package lifecycle

import (
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
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
	quiet := h.spec("quiet", "-listen", "127.0.0.1:${PORT}")
	quiet.IdleTimeout, quiet.IdleWhen = 300*time.Millisecond, appfile.IdleNoTraffic
	chatty := h.spec("chatty", "-listen", "127.0.0.1:${PORT}")
	chatty.IdleTimeout, chatty.IdleWhen = 300*time.Millisecond, appfile.IdleNoTraffic
	conns := h.spec("conns", "-listen", "127.0.0.1:${PORT}")
	conns.IdleTimeout = 300 * time.Millisecond
	h.m.Apply([]*appfile.Spec{quiet, chatty, conns})

	_, releaseQuiet := h.wake("quiet")
	defer releaseQuiet()
	up, releaseChatty := h.wake("chatty")
	defer releaseChatty()
	_, releaseConns := h.wake("conns")
	defer releaseConns()

	woke := time.Now()
	for time.Since(woke) < 4*quiet.IdleTimeout {
		h.m.Traffic("chatty", up)
		<-time.After(50 * time.Millisecond) // the traffic's pace, not synchronisation
	}
	if st := h.status("quiet"); st.State != Stopped {
		t.Errorf("quiet: %s; want stopped by idle_when: traffic with its connection open", fmtStatus(st))
	}
	if st := h.status("chatty"); st.State != Ready {
		t.Errorf("chatty: %s; want ready while bytes move", fmtStatus(st))
	}
	if st := h.status("conns"); st.State != Ready {
		t.Errorf("conns: %s; want ready while its connection is open", fmtStatus(st))
	}
	h.waitLog(`msg="app stopped"`, "app=quiet", "reason=idle")
}
