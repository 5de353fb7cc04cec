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
