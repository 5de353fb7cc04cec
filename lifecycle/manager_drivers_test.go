package lifecycle

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
)

func TestStartWithDriverMissingFromConfigFails(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("web")
	spec.Driver = appfile.DriverDocker
	spec.Command = nil
	spec.Containers = []string{"web"}
	spec.Upstream = "127.0.0.1:1"
	h.m.Apply([]*appfile.Spec{spec})
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	err := h.m.Start(ctx, "web", "manual")
	wantErr(t, err, ErrStartFailed)
	if !strings.Contains(err.Error(), `no "docker" driver in this daemon`) {
		t.Errorf("err = %v, want it to name the missing driver", err)
	}
}

func TestEmptyDriverMeansExec(t *testing.T) {
	h := newHarness(t)
	for _, d := range []string{"", appfile.DriverExec} {
		drv, err := h.m.driverFor(&appfile.Spec{Driver: d})
		if err != nil || drv != h.cfg.Driver {
			t.Errorf("driver %q: got %v, %v; want the exec driver", d, drv, err)
		}
	}
}

// TestAdoptStartsOnlyAStoppedAppItsDriverRecognises: a driver that saw
// an app started outside adopts it through Adopt; an app whose spec the
// driver does not recognise (a reload changed it), an unknown app, or an
// app that runs already, is not adopted.
func TestAdoptStartsOnlyAStoppedAppItsDriverRecognises(t *testing.T) {
	h := newHarness(t)
	old := h.spec("web")
	h.m.Apply([]*appfile.Spec{old})
	cur := h.spec("web")
	cur.IdleTimeout = 2 * time.Hour
	h.m.Apply([]*appfile.Spec{cur})
	var seen *appfile.Spec
	same := func(want *appfile.Spec) func(*appfile.Spec) bool {
		return func(s *appfile.Spec) bool { seen = s; return s == want }
	}
	if h.m.Adopt("web", same(old)) {
		t.Error("Adopt took an app whose spec the driver did not recognise")
	}
	if seen != cur {
		t.Errorf("same was shown %p, want the current spec %p", seen, cur)
	}
	if h.m.Adopt("nosuch", func(*appfile.Spec) bool { return true }) {
		t.Error("Adopt took an app that is not configured")
	}
	if !h.m.Adopt("web", same(cur)) {
		t.Fatal("Adopt refused a stopped app its driver recognises")
	}
	h.waitState("web", Ready)
	h.waitLog("app started", "app=web", "reason=adopt")
	if h.m.Adopt("web", same(cur)) {
		t.Error("Adopt took an app that runs")
	}
	if st := h.status("web"); st.Starts != 1 {
		t.Errorf("Starts = %d, want 1", st.Starts)
	}
}
