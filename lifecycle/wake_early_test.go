package lifecycle

import (
	"context"
	"net/netip"
	"testing"

	"github.com/dynapm/dynapm/appfile"
)

// TestWakeEarlyTellsTheUpstreamWhileStarting: WakeEarly tells the upstream
// of the instance it starts once, while it is still starting, and it is
// the one it leases; an app that is ready is leased without a word.
func TestWakeEarlyTellsTheUpstreamWhileStarting(t *testing.T) {
	h := newHarness(t)
	h.m.Apply([]*appfile.Spec{h.spec("web", "-listen", "127.0.0.1:${PORT}")})
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()

	var told []netip.AddrPort
	var stateThen State
	up, release, err := h.m.WakeEarly(ctx, "web", func(u netip.AddrPort) {
		told = append(told, u)
		stateThen = h.status("web").State
	})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if len(told) != 1 || told[0] != up || stateThen != Starting {
		t.Fatalf("early told %v while %v, want once %v while starting", told, stateThen, up)
	}
	if got := echo(t, up, "hello"); got != "hello" {
		t.Fatalf("echo through upstream %v = %q", up, got)
	}

	told = nil
	again, release2, err := h.m.WakeEarly(ctx, "web", func(u netip.AddrPort) { told = append(told, u) })
	if err != nil {
		t.Fatal(err)
	}
	defer release2()
	if again != up || len(told) != 0 {
		t.Fatalf("ready app: upstream %v, early told %v; want %v and no word", again, told, up)
	}
}
