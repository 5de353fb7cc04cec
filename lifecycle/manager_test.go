package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

// mgrWait bounds waits for things that take milliseconds, generously: the
// tests must not flake on a loaded 2-core machine.
const mgrWait = 15 * time.Second

// NewTestDriver returns the driver the harness runs its apps with, closed
// when the test ends. It is the exec driver, which imports this package
// and so cannot be imported by its tests: TestMain, in the external test
// package (main_test.go), sets it.
var NewTestDriver func(t testing.TB, logger *slog.Logger) Driver

// harness is a Manager with a real exec driver, a state directory and a
// captured log.
type harness struct {
	t    testing.TB
	m    *Manager
	cfg  Config
	logs *testutil.Buffer
	bin  string // the testapp program
	dir  string // working directory for the apps
}

// newHarness returns a Manager with short backoffs; edit changes the config
// before it is built. The Manager is shut down and the driver closed when
// the test ends.
func newHarness(t testing.TB, edit ...func(*Config)) *harness {
	t.Helper()
	logs := &testutil.Buffer{}
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelDebug}))
	// Before the harness's cleanup, so that the driver is closed after
	// the Manager has shut down (cleanups run last first).
	d := NewTestDriver(t, logger)
	cfg := Config{
		StateDir:   t.TempDir(),
		Logger:     logger,
		Driver:     d,
		BackoffMin: 50 * time.Millisecond,
		BackoffMax: 400 * time.Millisecond,
	}
	for _, e := range edit {
		e(&cfg)
	}
	h := &harness{t: t, m: NewManager(cfg), cfg: cfg, logs: logs, bin: testutil.TestApp(t), dir: t.TempDir()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
		defer cancel()
		if err := h.m.Shutdown(ctx); err != nil {
			t.Errorf("shutting down manager: %v", err)
		}
	})
	return h
}

// spec returns an on-demand app running testapp with args, with a long idle
// timeout and start timeout (tests shorten what they test).
func (h *harness) spec(name string, args ...string) *appfile.Spec {
	return &appfile.Spec{
		Name:         name,
		Listen:       []string{"127.0.0.1:1"},
		Command:      append([]string{h.bin}, args...),
		Dir:          h.dir,
		Mode:         appfile.OnDemand,
		IdleTimeout:  time.Hour,
		StartTimeout: 30 * time.Second,
		StopSignal:   syscall.SIGTERM,
		StopTimeout:  5 * time.Second,
		MaxPending:   appfile.DefaultMaxPending,
	}
}

// status returns the status of app, failing the test if it is unknown.
func (h *harness) status(name string) AppStatus {
	h.t.Helper()
	for _, st := range h.m.Status() {
		if st.Name == name {
			return st
		}
	}
	h.t.Fatalf("app %q not in status", name)
	return AppStatus{}
}

// waitState waits until app is in state s and returns its status.
func (h *harness) waitState(name string, s State) AppStatus {
	h.t.Helper()
	deadline := time.Now().Add(mgrWait)
	for {
		st := h.status(name)
		if st.State == s {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("after %v: app %q not %s: %s", mgrWait, name, s, fmtStatus(st))
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// wake leases app, failing the test on error, and releases the lease when
// the test ends unless the caller releases it first.
func (h *harness) wake(name string) (netip.AddrPort, func()) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), mgrWait)
	defer cancel()
	up, release, err := h.m.Wake(ctx, name)
	if err != nil {
		h.t.Fatalf("waking %q: %v", name, err)
	}
	return up, release
}

// logLine returns the first log line holding every one of parts, or "".
func (h *harness) logLine(parts ...string) string {
	for line := range strings.Lines(h.logs.String()) {
		if containsAll(line, parts...) {
			return line
		}
	}
	return ""
}

// waitLog waits for a log line holding every one of parts and returns it.
func (h *harness) waitLog(parts ...string) string {
	h.t.Helper()
	var line string
	testutil.Eventually(h.t, mgrWait, func() bool {
		line = h.logLine(parts...)
		return line != ""
	}, "no log line with %q", parts)
	return line
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// echo sends msg to the echo server at up and returns its answer.
func echo(t *testing.T, up netip.AddrPort, msg string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", up.String(), mgrWait)
	if err != nil {
		t.Fatalf("dialing %v: %v", up, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(mgrWait)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("writing to %v: %v", up, err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading from %v: %v", up, err)
	}
	return string(b)
}

// wantErr fails the test unless err wraps target.
func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
}

// fmtStatus makes an AppStatus readable in failure messages.
func fmtStatus(s AppStatus) string {
	return fmt.Sprintf("{%s %s pid=%d up=%s conns=%d pending=%d starts=%d restarts=%d err=%q}",
		s.Name, s.State, s.Pid, s.Upstream, s.Connections, s.Pending, s.Starts, s.Restarts, s.LastError)
}
