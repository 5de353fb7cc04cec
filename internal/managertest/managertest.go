// Package managertest runs a real lifecycle.Manager for the tests of the
// drivers that plug into it (driver/command, driver/docker). It is apart from
// testutil because lifecycle's own tests use testutil, and testutil must
// therefore not import lifecycle.
package managertest

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	execdriver "github.com/dynapm/dynapm/driver/exec"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/lifecycle"
)

// App is the name of the app the helpers look at: the tests' app files are
// all named app.yaml.
const App = "app"

// Harness is a Manager with a real exec driver as its default driver, a
// captured log, and a bound on every wait.
type Harness struct {
	T      *testing.T
	M      *lifecycle.Manager
	Logs   *testutil.Buffer // the Manager's and the drivers' log
	Logger *slog.Logger     // writes to Logs and to the test's output
	Wait   time.Duration    // bounds each wait
}

// New starts a Manager whose drivers, besides the exec driver, are those
// drivers returns for the harness's logger, and shuts it down (then closes
// the exec driver) when the test ends. Cleanups that drivers registers run
// after that shutdown.
func New(t *testing.T, wait time.Duration, drivers func(*slog.Logger) map[string]lifecycle.Driver) *Harness {
	t.Helper()
	logs := &testutil.Buffer{}
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(logs, t.Output()), nil))
	execDriver := execdriver.New(logger)
	m := lifecycle.NewManager(lifecycle.Config{
		StateDir:   t.TempDir(),
		Logger:     logger,
		Driver:     execDriver,
		Drivers:    drivers(logger),
		BackoffMin: 50 * time.Millisecond,
		BackoffMax: 400 * time.Millisecond,
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("shutting down manager: %v", err)
		}
		if err := execDriver.Close(); err != nil {
			t.Errorf("closing exec driver: %v", err)
		}
	})
	return &Harness{T: t, M: m, Logs: logs, Logger: logger, Wait: wait}
}

// Status returns the app's status, failing the test when the Manager does
// not know it.
func (h *Harness) Status() lifecycle.AppStatus {
	h.T.Helper()
	for _, st := range h.M.Status() {
		if st.Name == App {
			return st
		}
	}
	h.T.Fatal("app not in status")
	return lifecycle.AppStatus{}
}

// WaitState waits until the app is in state s and returns its status.
func (h *Harness) WaitState(s lifecycle.State) lifecycle.AppStatus {
	h.T.Helper()
	var st lifecycle.AppStatus
	testutil.Eventually(h.T, h.Wait, func() bool {
		st = h.Status()
		return st.State == s
	}, "app not %s: %+v", s, &st)
	return st
}

// Wake wakes the app and returns its upstream and the lease's release,
// which also runs when the test ends.
func (h *Harness) Wake() (netip.AddrPort, func()) {
	h.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), h.Wait)
	defer cancel()
	up, release, err := h.M.Wake(ctx, App)
	if err != nil {
		h.T.Fatalf("waking: %v", err)
	}
	h.T.Cleanup(release)
	return up, release
}
