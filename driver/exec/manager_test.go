package execdriver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/lifecycle"
)

// A lifecycle Manager over the driver, for the tests of what the Manager
// makes of the driver's answers. The driver imports lifecycle, not the
// other way round, so these tests can live here.

// managerWait bounds each wait on the Manager: generous, so that the tests
// do not flake on a loaded machine.
const managerWait = 15 * time.Second

// newTestManager returns a lifecycle Manager that runs its apps through a
// test driver and logs to the returned buffer (and the test's output). It
// backs off an hour after a failed start: what follows a failure is
// decided by the test, not by a timer. It is shut down when the test ends,
// before the driver is closed.
func newTestManager(t *testing.T) (*lifecycle.Manager, *testutil.Buffer) {
	t.Helper()
	d := newExecTestDriver(t)
	logs := &testutil.Buffer{}
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := lifecycle.NewManager(lifecycle.Config{
		StateDir:   t.TempDir(),
		Logger:     logger,
		Driver:     d,
		BackoffMin: time.Hour,
		BackoffMax: time.Hour,
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), managerWait)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("shutting down manager: %v", err)
		}
	})
	return m, logs
}

// upstreamApp is the on-demand app "web" on the fixed upstream, running
// testapp with args.
func upstreamApp(t *testing.T, upstream string, args ...string) *appfile.Spec {
	return &appfile.Spec{
		Name:         "web",
		Listen:       []string{"127.0.0.1:1"},
		Upstream:     upstream,
		Command:      append([]string{testutil.TestApp(t)}, args...),
		Dir:          t.TempDir(),
		Mode:         appfile.OnDemand,
		IdleTimeout:  time.Hour,
		StartTimeout: 30 * time.Second,
		StopSignal:   syscall.SIGTERM,
		StopTimeout:  5 * time.Second,
		MaxPending:   appfile.DefaultMaxPending,
	}
}

// webStatus returns the status of app "web".
func webStatus(t *testing.T, m *lifecycle.Manager) lifecycle.AppStatus {
	t.Helper()
	for _, st := range m.Status() {
		if st.Name == "web" {
			return st
		}
	}
	t.Fatal("app web not in status")
	return lifecycle.AppStatus{}
}

// wantErr fails the test unless err wraps target.
func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
}
