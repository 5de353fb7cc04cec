package cron

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

// waitFor polls cond until it holds or the deadline passes. The deadlines
// are generous: robfig/cron fires @every 1s at best once a second, and a
// loaded 2-core CI machine may add seconds.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, timeout, cond, "waiting for %s", what)
}

// keepUpCall is one recorded Waker.KeepUp call.
type keepUpCall struct {
	app       string
	at, until time.Time
}

// recWaker is an in-test Waker: the real lifecycle.Manager lives in another
// package. KeepUp records its calls; Wake leases the address of a real
// listener, counts the leases held and records why it was asked.
type recWaker struct {
	upstream netip.AddrPort
	// panicKeepUp makes the first KeepUp calls panic, to test recovery.
	panicKeepUp int

	mu       sync.Mutex
	keepUps  []keepUpCall
	leased   int
	leases   int
	releases int
	wakeErr  error
	// wakeReasons are the reasons WakeFor was given, in order.
	wakeReasons []string
}

func newRecWaker(t *testing.T) *recWaker {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &recWaker{upstream: ln.Addr().(*net.TCPAddr).AddrPort()}
}

func (w *recWaker) KeepUp(app string, until time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.panicKeepUp > 0 {
		w.panicKeepUp--
		panic("keep-up exploded")
	}
	w.keepUps = append(w.keepUps, keepUpCall{app: app, at: time.Now(), until: until})
	return nil
}

func (w *recWaker) WakeFor(ctx context.Context, app, reason string) (netip.AddrPort, func(), error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.wakeReasons = append(w.wakeReasons, reason)
	if w.wakeErr != nil {
		return netip.AddrPort{}, nil, w.wakeErr
	}
	w.leased++
	w.leases++
	var once sync.Once
	return w.upstream, func() {
		once.Do(func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.leased--
			w.releases++
		})
	}, nil
}

func (w *recWaker) calls() []keepUpCall {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]keepUpCall(nil), w.keepUps...)
}

func (w *recWaker) counts() (leased, leases, releases int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.leased, w.leases, w.releases
}

// logRecorder is a slog handler that keeps every record's message and
// attributes as text, so tests can wait for what the scheduler logged.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rec.Level, rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	r.mu.Unlock()
	return nil
}

// has tells whether a logged line contains every one of parts.
func (r *logRecorder) has(parts ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
next:
	for _, l := range r.lines {
		for _, p := range parts {
			if !strings.Contains(l, p) {
				continue next
			}
		}
		return true
	}
	return false
}

func (r *logRecorder) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

// newTestScheduler returns a started Scheduler logging into a recorder,
// with app logs in a temporary directory, shut down at the end of the test.
func newTestScheduler(t *testing.T, w Waker, tweak func(*Config)) (*Scheduler, *logRecorder) {
	t.Helper()
	rec := &logRecorder{}
	cfg := Config{
		Waker:         w,
		Logger:        slog.New(rec),
		LogDir:        filepath.Join(t.TempDir(), "logs"),
		ShutdownGrace: 2 * time.Second,
		KillGrace:     time.Second,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	s := New(cfg)
	s.Start()
	t.Cleanup(func() {
		_ = s.Shutdown(context.Background())
		if t.Failed() {
			t.Logf("scheduler log:\n%s", rec.dump())
		}
	})
	return s, rec
}

// jobSpec is an app with one job running script under /bin/sh in dir.
func jobSpec(name, dir, cron, script string) *appfile.Spec {
	return &appfile.Spec{
		Name: name,
		Dir:  dir,
		Jobs: []appfile.Job{{Cron: cron, Command: []string{"/bin/sh", "-c", script}}},
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// lines returns the non-empty lines of the file at path ("" when missing).
func lines(t *testing.T, path string) []string {
	t.Helper()
	return strings.Fields(readFile(t, path))
}

// count returns how many logged lines contain every one of parts.
func (r *logRecorder) count(parts ...string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
next:
	for _, l := range r.lines {
		for _, p := range parts {
			if !strings.Contains(l, p) {
				continue next
			}
		}
		n++
	}
	return n
}
