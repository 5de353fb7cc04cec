package admin

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAppsListsEveryAppWithUptime(t *testing.T) {
	ctl := newTestController("api", "web")
	_, c, _ := startServer(t, ctl)
	ctx := context.Background()
	if err := ctl.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	apps, err := c.Apps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 2 || apps[0].Name != "api" || apps[1].Name != "web" {
		t.Fatalf("apps = %+v", apps)
	}
	if apps[1].State != "ready" || apps[1].Pid != 4242 {
		t.Errorf("web = %+v, want ready with pid 4242", apps[1])
	}
	if apps[1].UptimeSeconds < 89 {
		t.Errorf("web uptime = %v, want about 90s", apps[1].UptimeSeconds)
	}
	if apps[0].UptimeSeconds != 0 || !apps[0].StartedAt.IsZero() {
		t.Errorf("stopped app has uptime: %+v", apps[0])
	}
}

func TestStartWaitsForTheControllerAndReturnsStatus(t *testing.T) {
	ctl := newTestController("web")
	ctl.startGate = make(chan struct{})
	_, c, _ := startServer(t, ctl)
	type result struct {
		a   App
		err error
	}
	done := make(chan result, 1)
	go func() {
		a, err := c.Start(context.Background(), "web")
		done <- result{a, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("Start returned before the app was ready: %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
	close(ctl.startGate)
	r := <-done
	if r.err != nil || r.a.State != "ready" || r.a.Starts != 1 {
		t.Fatalf("Start = %+v, %v; want ready after one start", r.a, r.err)
	}
}

func TestStartFailureReportsTheReason(t *testing.T) {
	ctl := newTestController("web")
	ctl.failStart["web"] = "exited with status 3: address already in use"
	_, c, logDir := startServer(t, ctl)
	if err := os.WriteFile(filepath.Join(logDir, "web.log"), []byte("--- starting ---\nbind: address already in use\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := c.Start(context.Background(), "web")
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict {
		t.Fatalf("err = %#v, want an APIError 409", err)
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error %q lacks the reason", err)
	}
	if apiErr.LogTail != "--- starting ---\nbind: address already in use\n" {
		t.Errorf("log tail = %q", apiErr.LogTail)
	}
}

func TestUnknownAppIs404WithJSONError(t *testing.T) {
	_, c, _ := startServer(t, newTestController("web"))
	ctx := context.Background()
	calls := map[string]func() error{
		"app":     func() error { _, err := c.App(ctx, "nope"); return err },
		"start":   func() error { _, err := c.Start(ctx, "nope"); return err },
		"stop":    func() error { _, err := c.Stop(ctx, "nope"); return err },
		"restart": func() error { _, err := c.Restart(ctx, "nope"); return err },
		"logs":    func() error { return c.Logs(ctx, "nope", 10, false, os.Stdout) },
		"bad":     func() error { _, err := c.Start(ctx, "../etc"); return err },
	}
	for name, call := range calls {
		err := call()
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound || !errors.Is(err, ErrUnknownApp) {
			t.Errorf("%s: err = %#v, want 404 unknown app", name, err)
		}
	}
}

func TestStopAndRestart(t *testing.T) {
	ctl := newTestController("web")
	_, c, _ := startServer(t, ctl)
	ctx := context.Background()
	a, err := c.Restart(ctx, "web")
	if err != nil || a.State != "ready" || a.Restarts != 1 {
		t.Fatalf("Restart = %+v, %v", a, err)
	}
	a, err = c.Stop(ctx, "web")
	if err != nil || a.State != "stopped" || a.Pid != 0 {
		t.Fatalf("Stop = %+v, %v", a, err)
	}
}

func TestClientSaysWhenTheDaemonIsNotRunning(t *testing.T) {
	dir := shortDir(t)
	c := &Client{Socket: SocketPath(dir)}
	_, err := c.Apps(context.Background())
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("err = %v, want ErrNotRunning", err)
	}
	for _, want := range []string{"dynapm is not running", SocketPath(dir), "dynapm run"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestUnknownEndpointIs404(t *testing.T) {
	s, _, _ := startServer(t, newTestController())
	c := &Client{Socket: s.Socket()}
	_, err := c.do(context.Background(), http.MethodGet, "/v2/apps", nil)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound || apiErr.Code != "not_found" {
		t.Fatalf("err = %#v", err)
	}
}
