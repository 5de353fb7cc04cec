package admin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dynapm/dynapm/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testController is an in-memory Controller: the admin package must not
// depend on lifecycle, and these tests are about the API, not about apps.
type testController struct {
	mu   sync.Mutex
	apps map[string]*App
	// failStart makes Start fail for the named apps with this reason.
	failStart map[string]string
	// startGate, when set, makes Start wait for it (or ctx).
	startGate chan struct{}
	// overrides records the Override calls.
	overrides []OverrideRequest
}

func newTestController(names ...string) *testController {
	c := &testController{apps: map[string]*App{}, failStart: map[string]string{}}
	for _, n := range names {
		c.apps[n] = &App{Name: n, State: "stopped", Mode: "on-demand", Listen: []string{"127.0.0.1:8080"}, Upstream: "127.0.0.1:18080"}
	}
	return c
}

func (c *testController) Apps() []App {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []App
	for _, n := range sortedKeys(c.apps) {
		out = append(out, *c.apps[n])
	}
	return out
}

func (c *testController) Start(ctx context.Context, name string) error {
	c.mu.Lock()
	a, ok := c.apps[name]
	gate := c.startGate
	reason := c.failStart[name]
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("starting app %q: %w", name, ErrUnknownApp)
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if reason != "" {
		a.State, a.LastError = "failed", reason
		return fmt.Errorf("starting app %q: %s", name, reason)
	}
	a.State, a.Pid, a.StartedAt = "ready", 4242, time.Now().Add(-90*time.Second)
	a.Starts++
	return nil
}

func (c *testController) Stop(ctx context.Context, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.apps[name]
	if !ok {
		return fmt.Errorf("stopping app %q: %w", name, ErrUnknownApp)
	}
	a.State, a.Pid, a.StartedAt = "stopped", 0, time.Time{}
	return nil
}

func (c *testController) Restart(ctx context.Context, name string) error {
	if err := c.Stop(ctx, name); err != nil {
		return err
	}
	c.mu.Lock()
	if a := c.apps[name]; a != nil {
		a.Restarts++
	}
	c.mu.Unlock()
	return c.Start(ctx, name)
}

func (c *testController) Override(ctx context.Context, name string, o OverrideRequest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.apps[name]
	if !ok {
		return fmt.Errorf("%s app %q: %w", o.Action, name, ErrUnknownApp)
	}
	c.overrides = append(c.overrides, o)
	a.Disabled = o.Action == "disable"
	a.Pinned = o.Action == "pin"
	return nil
}

func sortedKeys(m map[string]*App) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return ks
}

// shortDir is a private temp dir with a path short enough for a Unix
// socket (sun_path is 108 bytes; t.TempDir() paths can be longer).
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "d")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startServer serves ctl from a fresh state dir and returns the server and
// a client for it.
func startServer(t testing.TB, ctl Controller) (*Server, *Client, string) {
	t.Helper()
	dir := shortDir(t)
	logDir := filepath.Join(dir, "logs")
	if err := os.Mkdir(logDir, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := Serve(Config{StateDir: dir, LogDir: logDir, Controller: ctl, FollowInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return s, &Client{Socket: s.Socket()}, logDir
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, cond, "waiting for %s", what)
}
