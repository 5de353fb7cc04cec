package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynapm/dynapm/admin"
)

// cliController is an in-memory admin.Controller for the client commands'
// own tests (formatting, flags, exit codes); the end-to-end tests drive the
// same commands against the real daemon.
type cliController struct {
	mu   sync.Mutex
	apps []admin.App
}

func (c *cliController) Apps() []admin.App {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]admin.App(nil), c.apps...)
}

func (c *cliController) find(name string) (*admin.App, error) {
	for i := range c.apps {
		if c.apps[i].Name == name {
			return &c.apps[i], nil
		}
	}
	return nil, fmt.Errorf("app %q: %w", name, admin.ErrUnknownApp)
}

func (c *cliController) Start(ctx context.Context, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, err := c.find(name)
	if err != nil {
		return err
	}
	if a.Mode == "broken" {
		a.State, a.LastError = "failed", "exited with status 1 before it was ready: bind: address already in use"
		return fmt.Errorf("starting app %q: %s", name, a.LastError)
	}
	a.State, a.Pid, a.StartedAt = "ready", 31337, time.Now()
	return nil
}

func (c *cliController) Stop(ctx context.Context, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, err := c.find(name)
	if err != nil {
		return err
	}
	a.State, a.Pid, a.StartedAt = "stopped", 0, time.Time{}
	return nil
}

func (c *cliController) Restart(ctx context.Context, name string) error {
	if err := c.Stop(ctx, name); err != nil {
		return err
	}
	return c.Start(ctx, name)
}

func (c *cliController) Override(ctx context.Context, name string, o admin.OverrideRequest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, err := c.find(name)
	if err != nil {
		return err
	}
	a.Disabled = o.Action == "disable"
	a.Pinned = o.Action == "pin"
	if o.For > 0 {
		a.PinnedUntil = time.Date(2026, 1, 2, 21, 30, 0, 0, time.Local)
	}
	return nil
}

// cliServer serves ctl on a fresh state directory and returns the
// directory, to be passed as -state.
func cliServer(t *testing.T, ctl admin.Controller) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "c") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	logDir := filepath.Join(dir, "logs")
	if err := os.Mkdir(logDir, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := admin.Serve(admin.Config{StateDir: dir, LogDir: logDir, Controller: ctl, FollowInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return dir
}

func sampleApps() *cliController {
	now := time.Now()
	return &cliController{apps: []admin.App{
		{Name: "api", State: "ready", Mode: "on-demand", Pid: 4242, StartedAt: now.Add(-3*time.Hour - 7*time.Minute),
			Connections: 2, Pending: 0, RSSBytes: 52 << 20, LastActivity: now.Add(-90 * time.Second), StopsAt: now.Add(4*time.Minute + 12*time.Second),
			Listen: []string{"127.0.0.1:8080", "[::1]:8080"}, Upstream: "127.0.0.1:18080", Starts: 3,
			Status: "accepting connections"},
		{Name: "web", State: "stopped", Mode: "on-demand", NextWake: now.Add(2*time.Hour + 30*time.Second),
			Listen: []string{"127.0.0.1:8081"}, LastError: "exited with status 1:\nbind: address already in use"},
		{Name: "bad", State: "stopped", Mode: "broken", Listen: []string{"127.0.0.1:8082"}},
	}}
}

// run calls a command function and returns its exit code and output.
func run(cmd func([]string, io.Writer, io.Writer) int, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := cmd(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestStatusPrintsATable(t *testing.T) {
	state := cliServer(t, sampleApps())
	code, out, errOut := run(statusCommand, "-state", state)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header and 3 rows, got:\n%s", out)
	}
	header := strings.Fields(lines[0])
	wantHeader := []string{"NAME", "STATE", "PID", "UPTIME", "CONNS", "HELD", "RSS", "LAST-ACTIVE", "STOPS-IN", "NEXT-WAKE", "LAST-JOB", "LISTEN", "STATUS", "LAST-ERROR"}
	if strings.Join(header, " ") != strings.Join(wantHeader, " ") {
		t.Errorf("header = %q", lines[0])
	}
	// Columns line up: every row has LISTEN where the header has it.
	col := strings.Index(lines[0], "LISTEN")
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l[col:], "127.0.0.1:") {
			t.Errorf("row not aligned under LISTEN: %q", l)
		}
	}
	for _, want := range []string{"4242", "3h07m", "52.0M", "1m30s ago", " 4m1", "127.0.0.1:8080,[::1]:8080", "accepting connections"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("api row %q lacks %q", lines[1], want)
		}
	}
	for _, want := range []string{"in 2h00m", "exited with status 1: bind: address already in use"} {
		if !strings.Contains(lines[2], want) {
			t.Errorf("web row %q lacks %q", lines[2], want)
		}
	}
}

func TestStatusTableShowsTheLastJobRun(t *testing.T) {
	now := time.Now()
	ctl := &cliController{apps: []admin.App{
		{Name: "ok", State: "stopped", Listen: []string{"127.0.0.1:8080"},
			LastJob: &admin.Job{Command: []string{"./tidy"}, Started: now.Add(-5*time.Minute - 1200*time.Millisecond), Seconds: 1.2}},
		{Name: "sad", State: "stopped", Listen: []string{"127.0.0.1:8081"},
			LastJob: &admin.Job{Command: []string{"false"}, Started: now.Add(-time.Hour), Seconds: 0.35, ExitCode: 2, Error: "exit status 2"}},
		{Name: "slow", State: "ready", Pid: 7, StartedAt: now.Add(-time.Hour), Listen: []string{"127.0.0.1:8082"},
			LastJob: &admin.Job{Command: []string{"./sync"}, Started: now.Add(-3 * time.Minute), Seconds: 65, ExitCode: -1, Error: "job timed out after 1m5s: signal: killed"}},
		{Name: "quiet", State: "stopped", Listen: []string{"127.0.0.1:8083"}},
	}}
	state := cliServer(t, ctl)
	code, out, errOut := run(statusCommand, "-state", state)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("want a header and 4 rows, got:\n%s", out)
	}
	// The cell under LAST-JOB, up to the LISTEN column.
	from, to := strings.Index(lines[0], "LAST-JOB"), strings.Index(lines[0], "LISTEN")
	if from < 0 || to < from {
		t.Fatalf("header lacks LAST-JOB before LISTEN: %q", lines[0])
	}
	for i, want := range []string{
		"exit 0 1.2s 5m00s ago",
		"exit 2 350ms 1h00m ago",
		"failed 1m05s 1m55s ago", // did not exit on its own: the error is in -json
		"-",
	} {
		if got := strings.TrimSpace(lines[1+i][from:to]); got != want {
			t.Errorf("%s: LAST-JOB = %q, want %q (row %q)", ctl.apps[i].Name, got, want, lines[1+i])
		}
	}
}

func TestStatusShowsEachInstanceOfAScaledApp(t *testing.T) {
	now := time.Now()
	ctl := &cliController{apps: []admin.App{
		{Name: "api", State: "ready", Pid: 11, StartedAt: now.Add(-time.Minute), Connections: 5,
			Listen: []string{"127.0.0.1:8080"}, Upstream: "127.0.0.1:30001",
			Instances: []admin.Instance{
				{Index: 0, Pid: 11, State: "ready", Upstream: "127.0.0.1:30001", Connections: 3, StartedAt: now.Add(-time.Minute)},
				{Index: 1, Pid: 12, State: "starting", Upstream: "127.0.0.1:30002", Connections: 2, StartedAt: now.Add(-5 * time.Second)},
			}},
		{Name: "web", State: "ready", Pid: 21, StartedAt: now.Add(-time.Minute), Listen: []string{"127.0.0.1:8081"},
			Instances: []admin.Instance{{Index: 0, Pid: 21, State: "ready", Upstream: "127.0.0.1:30003", StartedAt: now.Add(-time.Minute)}}},
	}}
	state := cliServer(t, ctl)
	code, out, errOut := run(statusCommand, "-state", state)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	// Header, api, its two instances, web (one instance: no extra row).
	if len(lines) != 5 {
		t.Fatalf("want 5 lines, got:\n%s", out)
	}
	col := strings.Index(lines[0], "LISTEN")
	for i, want := range []struct{ name, pid, upstream string }{{"api#0", "11", "127.0.0.1:30001"}, {"api#1", "12", "127.0.0.1:30002"}} {
		f := strings.Fields(lines[2+i])
		if f[0] != want.name || f[2] != want.pid || !strings.HasPrefix(lines[2+i][col:], want.upstream) {
			t.Errorf("instance row %q, want %s pid %s with %s under LISTEN", lines[2+i], want.name, want.pid, want.upstream)
		}
	}
	if !strings.HasPrefix(lines[4], "web ") {
		t.Errorf("last row %q, want web", lines[4])
	}

	code, out, _ = run(statusCommand, "-json", "-state", state)
	var apps []admin.App
	if err := json.Unmarshal([]byte(out), &apps); code != 0 || err != nil {
		t.Fatalf("-json: exit %d, %v", code, err)
	}
	in := apps[0].Instances
	if len(in) != 2 || in[1].Index != 1 || in[1].Pid != 12 || in[1].State != "starting" || in[1].Connections != 2 || in[1].UptimeSeconds < 4 {
		t.Errorf("api instances = %+v", in)
	}
}

func TestStatusJSON(t *testing.T) {
	state := cliServer(t, sampleApps())
	code, out, errOut := run(statusCommand, "-json", "-state", state)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var apps []map[string]any
	if err := json.Unmarshal([]byte(out), &apps); err != nil {
		t.Fatalf("not a JSON array: %v\n%s", err, out)
	}
	if len(apps) != 3 {
		t.Fatalf("got %d apps", len(apps))
	}
	for _, key := range []string{"name", "state", "pid", "connections", "rss_bytes", "pending", "uptime_seconds", "listen", "upstream", "starts", "restarts"} {
		if _, ok := apps[0][key]; !ok {
			t.Errorf("status -json lacks %q: %v", key, apps[0])
		}
	}
	if apps[0]["name"] != "api" || apps[0]["pid"] != float64(4242) || apps[0]["rss_bytes"] != float64(52<<20) {
		t.Errorf("api = %v", apps[0])
	}
}

func TestStatusWithNoApps(t *testing.T) {
	state := cliServer(t, &cliController{})
	code, out, _ := run(statusCommand, "-state", state)
	if code != 0 || !strings.Contains(out, "no apps") {
		t.Fatalf("exit %d, out %q", code, out)
	}
	code, out, _ = run(statusCommand, "-json", "-state", state)
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("-json: exit %d, out %q", code, out)
	}
}

func TestClientCommandsSayTheDaemonIsNotRunning(t *testing.T) {
	state := t.TempDir()
	cmds := map[string]func() (int, string, string){
		"status":  func() (int, string, string) { return run(statusCommand, "-state", state) },
		"start":   func() (int, string, string) { return run(startCommand, "-state", state, "web") },
		"stop":    func() (int, string, string) { return run(stopCommand, "web", "-state", state) },
		"restart": func() (int, string, string) { return run(restartCommand, "web", "-state", state) },
		"logs":    func() (int, string, string) { return run(logsCommand, "web", "-state", state) },
	}
	for name, cmd := range cmds {
		code, _, errOut := cmd()
		if code != 1 {
			t.Errorf("%s: exit %d, want 1", name, code)
		}
		for _, want := range []string{"dynapm is not running", filepath.Join(state, "dynapm.sock"), "dynapm run"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("%s: stderr %q lacks %q", name, errOut, want)
			}
		}
	}
}

func TestStartStopRestart(t *testing.T) {
	ctl := sampleApps()
	state := cliServer(t, ctl)
	code, out, errOut := run(startCommand, "-state", state, "web")
	if code != 0 || !strings.HasPrefix(out, "web: ready (pid 31337) in ") {
		t.Fatalf("start: exit %d, out %q, err %q", code, out, errOut)
	}
	code, out, errOut = run(stopCommand, "web", "-state", state)
	if code != 0 || !strings.HasPrefix(out, "web: stopped in ") {
		t.Fatalf("stop: exit %d, out %q, err %q", code, out, errOut)
	}
	code, out, errOut = run(restartCommand, "web", "-state", state)
	if code != 0 || !strings.HasPrefix(out, "web: ready (pid 31337)") {
		t.Fatalf("restart: exit %d, out %q, err %q", code, out, errOut)
	}
}

func TestStartReportsWhyTheAppDidNotStart(t *testing.T) {
	state := cliServer(t, sampleApps())
	if err := os.WriteFile(filepath.Join(state, "logs", "bad.log"), []byte("Error: listen EADDRINUSE\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(startCommand, "-state", state, "bad")
	if code != 1 || out != "" {
		t.Fatalf("exit %d, out %q", code, out)
	}
	if !strings.Contains(errOut, `"bad"`) || !strings.Contains(errOut, "address already in use") {
		t.Fatalf("stderr %q lacks the reason", errOut)
	}
	if !strings.Contains(errOut, "last lines of its log (dynapm logs bad):\n  Error: listen EADDRINUSE\n") {
		t.Fatalf("stderr %q lacks the log tail", errOut)
	}
}

func TestUnknownAppAndUsageErrors(t *testing.T) {
	state := cliServer(t, sampleApps())
	code, _, errOut := run(startCommand, "-state", state, "nope")
	if code != 1 || !strings.Contains(errOut, `unknown app "nope"`) {
		t.Errorf("unknown app: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = run(stopCommand, "-state", state)
	if code != 2 || !strings.Contains(errOut, "missing app name") {
		t.Errorf("no name: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = run(restartCommand, "-state", state, "web", "api")
	if code != 2 || !strings.Contains(errOut, `unexpected argument "api"`) {
		t.Errorf("two names: exit %d, stderr %q", code, errOut)
	}
	code, _, _ = run(statusCommand, "-bogus")
	if code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
}

func TestLogsPrintsTheTail(t *testing.T) {
	state := cliServer(t, sampleApps())
	var sb strings.Builder
	for i := 1; i <= 80; i++ {
		fmt.Fprintf(&sb, "line %d\n", i)
	}
	if err := os.WriteFile(filepath.Join(state, "logs", "api.log"), []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(logsCommand, "api", "-n", "2", "-state", state)
	if code != 0 || out != "line 79\nline 80\n" {
		t.Fatalf("exit %d, out %q, err %q", code, out, errOut)
	}
	code, out, _ = run(logsCommand, "-state", state, "api")
	if code != 0 || !strings.HasPrefix(out, "line 31\n") || strings.Count(out, "\n") != 50 {
		t.Fatalf("default tail: exit %d, %d lines starting %q", code, strings.Count(out, "\n"), out[:min(len(out), 10)])
	}
}

func TestShortDuration(t *testing.T) {
	cases := map[time.Duration]string{
		0:                              "0s",
		45 * time.Second:               "45s",
		3*time.Minute + 12*time.Second: "3m12s",
		5*time.Hour + 7*time.Minute:    "5h07m",
		12*24*time.Hour + 3*time.Hour:  "12d03h",
		-time.Second:                   "0s",
		1500 * time.Millisecond:        "2s",
	}
	for d, want := range cases {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestBytesCell(t *testing.T) {
	cases := map[uint64]string{0: "-", 512: "512B", 1536: "1.5K", 52 << 20: "52.0M", 3 << 30: "3.0G"}
	for b, want := range cases {
		if got := bytesCell(b); got != want {
			t.Errorf("bytesCell(%d) = %q, want %q", b, got, want)
		}
	}
}

func TestPinUnpinDisableEnable(t *testing.T) {
	state := cliServer(t, sampleApps())
	code, out, errOut := run(pinCommand, "web", "-for", "2h", "-state", state)
	if code != 0 || !strings.HasPrefix(out, "web: stopped (pinned until 21:30) in ") && !strings.HasPrefix(out, "web: stopped (pinned until 2026-01-02 21:30) in ") {
		t.Fatalf("pin: exit %d, out %q, err %q", code, out, errOut)
	}
	if code, _, errOut := run(pinCommand, "web", "-for", "-1h", "-state", state); code != 2 || !strings.Contains(errOut, "-for must be ≥ 0") {
		t.Fatalf("pin -for -1h: exit %d, err %q", code, errOut)
	}
	code, out, errOut = run(overrideCommand("disable"), "web", "-state", state)
	if code != 0 || !strings.HasPrefix(out, "web: stopped (disabled) in ") {
		t.Fatalf("disable: exit %d, out %q, err %q", code, out, errOut)
	}
	for _, verb := range []string{"unpin", "enable"} {
		code, out, errOut = run(overrideCommand(verb), "web", "-state", state)
		if code != 0 || !strings.HasPrefix(out, "web: stopped in ") {
			t.Fatalf("%s: exit %d, out %q, err %q", verb, code, out, errOut)
		}
	}
	if code, _, _ := run(overrideCommand("disable"), "nope", "-state", state); code != 1 {
		t.Fatalf("disable of an unknown app: exit %d, want 1", code)
	}
}

func TestStateCell(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.Local)
	for _, c := range []struct {
		a    admin.App
		want string
	}{
		{admin.App{State: "ready"}, "ready"},
		{admin.App{State: "ready", Pinned: true}, "ready (pinned)"},
		{admin.App{State: "ready", Pinned: true, PinnedUntil: now.Add(9*time.Hour + 30*time.Minute)}, "ready (pinned until 21:30)"},
		{admin.App{State: "ready", Pinned: true, PinnedUntil: now.Add(48 * time.Hour)}, "ready (pinned until 2026-01-04 12:00)"},
		{admin.App{State: "stopped", Disabled: true}, "stopped (disabled)"},
		{admin.App{State: "ready", KeptUpBy: []string{"api", "web"}}, "ready (needed by api,web)"},
		{admin.App{State: "ready", Pinned: true, KeptUpBy: []string{"web"}}, "ready (pinned, needed by web)"},
	} {
		if got := stateCell(c.a, now); got != c.want {
			t.Errorf("stateCell(%+v) = %q, want %q", c.a, got, c.want)
		}
	}
}
