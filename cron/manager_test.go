package cron

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	execdriver "github.com/dynapm/dynapm/driver/exec"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/lifecycle"
)

// The lifecycle manager is what the daemon passes as Waker.
var _ Waker = (*lifecycle.Manager)(nil)

// newRealManager returns a lifecycle.Manager with the exec driver, its logs
// in stateDir/logs, shut down (after the scheduler: cleanups run last first)
// when the test ends.
func newRealManager(t *testing.T, stateDir string) *lifecycle.Manager {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	d := execdriver.New(logger)
	m := lifecycle.NewManager(lifecycle.Config{StateDir: stateDir, Logger: logger, Driver: d})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("shutting down manager: %v", err)
		}
		if err := d.Close(); err != nil {
			t.Errorf("closing driver: %v", err)
		}
	})
	return m
}

func managerStatus(m *lifecycle.Manager, app string) lifecycle.AppStatus {
	for _, st := range m.Status() {
		if st.Name == app {
			return st
		}
	}
	return lifecycle.AppStatus{}
}

// testAppSpec is an on-demand echo server app that stops after 200ms idle.
func testAppSpec(t *testing.T, name string) *appfile.Spec {
	return &appfile.Spec{
		Name:         name,
		Listen:       []string{testutil.FreeAddr(t)},
		Command:      []string{testutil.TestApp(t), "-mode", "echo"},
		Dir:          t.TempDir(),
		Mode:         appfile.OnDemand,
		IdleTimeout:  200 * time.Millisecond,
		StartTimeout: 10 * time.Second,
		StopSignal:   syscall.SIGTERM,
		StopTimeout:  5 * time.Second,
		MaxPending:   16,
	}
}

func TestWithManagerWakeKeepsAppUpPastItsIdleTimeout(t *testing.T) {
	state := t.TempDir()
	m := newRealManager(t, state)
	s, rec := newTestScheduler(t, m, func(c *Config) { c.LogDir = filepath.Join(state, "logs") })
	spec := testAppSpec(t, "warm")
	spec.Wake = []appfile.Wake{{Cron: "@every 1s", Keep: time.Hour}}
	specs := []*appfile.Spec{spec}
	m.Apply(specs)
	s.Apply(specs)

	waitFor(t, 20*time.Second, "the woken app to be ready", func() bool { return managerStatus(m, "warm").State == lifecycle.Ready })
	// Three wakes in, well past ten idle timeouts: still the first process.
	waitFor(t, 30*time.Second, "three scheduled wakes", func() bool { return rec.count("scheduled wake", "app=warm") >= 3 })
	if st := managerStatus(m, "warm"); st.State != lifecycle.Ready || st.Starts != 1 {
		t.Errorf("status = %s with %d starts, want ready with one start (kept up, not restarted)", st.State, st.Starts)
	}
}

func TestWithManagerNeedsAppJobWakesAppAndSeesItsPort(t *testing.T) {
	state := t.TempDir()
	m := newRealManager(t, state)
	s, _ := newTestScheduler(t, m, func(c *Config) { c.LogDir = filepath.Join(state, "logs") })
	spec := testAppSpec(t, "api")
	spec.Upstream = testutil.FreeAddr(t)
	spec.Command = append(spec.Command, "-listen", spec.Upstream)
	dir := t.TempDir()
	spec.Jobs = []appfile.Job{{
		Cron:     "@every 1s",
		Command:  []string{"/bin/sh", "-c", "echo $PORT >> " + filepath.Join(dir, "ports")},
		Timeout:  time.Minute,
		NeedsApp: true,
	}}
	specs := []*appfile.Spec{spec}
	m.Apply(specs)
	s.Apply(specs)

	waitFor(t, 20*time.Second, "a job result", func() bool { _, ok := s.LastJob("api"); return ok })
	if res, _ := s.LastJob("api"); res.Err != nil {
		t.Fatalf("job failed: %v", res.Err)
	}
	if _, p, _ := net.SplitHostPort(spec.Upstream); lines(t, filepath.Join(dir, "ports"))[0] != p {
		t.Errorf("job saw PORT=%s, the app listens on %s", lines(t, filepath.Join(dir, "ports"))[0], spec.Upstream)
	}
	// The lease was released: the app idles out (200ms) between runs. A
	// lease held on would keep it up for ever.
	waitFor(t, 20*time.Second, "the app to stop when idle", func() bool {
		st := managerStatus(m, "api")
		return st.State == lifecycle.Stopped && st.Starts >= 1
	})
}
