package lifecycle

import (
	"context"
	"strings"
	"testing"

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
