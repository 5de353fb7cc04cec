// Package appsdir keeps the daemon's picture of the apps.d directory up to
// date: it watches the directory (not single files) with fsnotify, reloads
// each changed file once its writes have settled, keeps the last good
// version of an app whose file turned invalid, and hands the daemon a new
// immutable snapshot of every app after each change.
package appsdir

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/trust"
)

// DefaultDebounce is how long a file must stay quiet before it is reloaded.
// Editors save in bursts (truncate, write, chmod, rename); waiting for the
// burst to end applies each save once, with its final content.
const DefaultDebounce = 50 * time.Millisecond

// DefaultRetry is how soon an app that could not be put in force for a
// reason outside apps.d (its listen address is held by another process,
// say) is tried again; each failed retry doubles the wait, up to
// maxRetryFactor times it, until the app is in force or a file changes.
// Why the growth: a retry applies every app again, which with thousands of
// apps is a noticeable share of a CPU for as long as one port stays taken
// (docs/BENCHMARKS.md, reload retries).
const DefaultRetry = 2 * time.Second

// maxRetryFactor bounds the retry wait at 32 × Retry (about a minute).
const maxRetryFactor = 32

// Config configures a Watcher. Only Dir and Apply are required.
type Config struct {
	// Dir is the apps.d directory.
	Dir string
	// Apply receives every new snapshot: all apps in force, sorted by
	// name. It is called from one goroutine at a time and returns the
	// errors of apps that could not be put in force (a listen address
	// that cannot be bound, say); those apps are rolled back to their
	// last good version, and Apply is called again with it.
	Apply func(specs []*appfile.Spec) []AppError
	// Debounce is how long a file must stay quiet before it is reloaded;
	// zero means DefaultDebounce.
	Debounce time.Duration
	// Retry is how soon apps that Apply rejected are tried again (then
	// twice as late each time, up to 32 × Retry); zero means DefaultRetry.
	Retry time.Duration
	// Logger receives one line per problem, naming file and field.
	Logger *slog.Logger
	// Rejected, when set, is called once per distinct problem that keeps
	// an app file out of force (metrics count them).
	Rejected func(path string, err error)
	// Trust, when set, judges Dir (and every directory above it) at New,
	// before every reload and every Recheck, and every app file as it is
	// read (see internal/trust): while Dir cannot be trusted nothing is
	// reloaded from it and the apps in force stay; a file that cannot be
	// trusted is refused. The daemon sets it; its Private directories
	// (the state directory) are where no app file may resolve to.
	Trust *trust.Checker
	// Recheck is how often Dir is judged again between reloads, for a
	// change of mode or owner above it, which no event reports; zero
	// means DefaultRecheck.
	Recheck time.Duration
}

// DefaultRecheck is how often the apps directory is judged again between
// reloads (a chmod of the directory itself is seen at once).
const DefaultRecheck = 10 * time.Second

// distrustRepeat is how often the refusal of an apps directory that still
// cannot be trusted is logged again.
const distrustRepeat = time.Minute

// AppError is an app that Apply could not put in force.
type AppError struct {
	App string
	Err error
}

// Watcher follows one apps.d directory. Create it with New, then call Run.
type Watcher struct {
	cfg Config
	log *slog.Logger
	fsw *fsnotify.Watcher
	// events and errs are fsw's channels. Tests swap them to lose events
	// and to inject an overflow: a real one needs a system-wide sysctl.
	events <-chan fsnotify.Event
	errs   <-chan error

	rescan chan struct{}

	// Owned by the Run goroutine (and by New before Run starts).
	files   map[string]*file     // by path: every app file seen
	pending map[string]time.Time // path -> when it may be reloaded
	timerAt time.Time            // when the debounce timer fires; zero if stopped
	// retryDue: some app was rejected by Apply, not by its file; Run
	// tries it again every cfg.Retry while this holds.
	retryDue bool
	// applied: the first snapshot was applied (even an empty one).
	applied bool
	// distrust is why Dir cannot be trusted, "" while it can; logged at
	// distrustLogged. stale: a reload was refused meanwhile, so every
	// file is read again once Dir can be trusted.
	distrust       string
	distrustLogged time.Time
	stale          bool

	mu      sync.Mutex // guards snap and refused for readers on other goroutines
	snap    []*appfile.Spec
	refused []Refused
}

// file is what the watcher knows of one app file.
type file struct {
	hash [sha256.Size]byte
	// good is the version of this file in force, or nil.
	good *appfile.Spec
	// next is a version that parsed but is not in force yet, because it
	// clashed with another app or could not be applied. It is tried again
	// at every change, since the app in its way may have gone.
	next *appfile.Spec
	// lastErr is the last problem logged for next, so that retries do not
	// log the same problem again and again.
	lastErr string
	// applyFailed: next was valid but Apply could not put it in force
	// (an address held outside DynaPM); it is retried every Config.Retry.
	applyFailed bool
}

// New starts watching cfg.Dir and loads every app file in it, applying
// the first snapshot before it returns. The watch starts before the first
// scan, so that no change made meanwhile is lost.
func New(cfg Config) (*Watcher, error) {
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Retry <= 0 {
		cfg.Retry = DefaultRetry
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	// Specs name their files by absolute path; so must the watcher, or a
	// relative apps dir ("./apps.d", the default) would never match them.
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("watching apps dir: %w", err)
	}
	cfg.Dir = dir
	if cfg.Recheck <= 0 {
		cfg.Recheck = DefaultRecheck
	}
	if cfg.Trust != nil {
		if err := cfg.Trust.Dir(cfg.Dir, "apps directory"); err != nil {
			return nil, err
		}
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watching apps dir: %w", err)
	}
	if err := fsw.Add(cfg.Dir); err != nil {
		fsw.Close()
		return nil, fmt.Errorf("watching apps dir %s: %w", cfg.Dir, err)
	}
	w := &Watcher{
		cfg:     cfg,
		log:     log,
		fsw:     fsw,
		events:  fsw.Events,
		errs:    fsw.Errors,
		rescan:  make(chan struct{}, 1),
		files:   map[string]*file{},
		pending: map[string]time.Time{},
	}
	w.scan()
	return w, nil
}

// Snapshot returns the apps in force, sorted by name. The slice and the
// specs must not be modified.
func (w *Watcher) Snapshot() []*appfile.Spec {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.snap
}

// Rescan asks for a full rescan of the directory (on SIGHUP, say).
func (w *Watcher) Rescan() {
	select {
	case w.rescan <- struct{}{}:
	default: // one is already due
	}
}

// Run follows the directory until ctx ends, then releases the watch.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.fsw.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	// The retry timer runs while retryDue holds: armed at cfg.Retry when
	// an app is first rejected, doubling after each retry that fails.
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var retryWait time.Duration // 0: not armed
	var recheck <-chan time.Time
	if w.cfg.Trust != nil {
		t := time.NewTicker(w.cfg.Recheck)
		defer t.Stop()
		recheck = t.C
	}
	armRetry := func() {
		switch {
		case !w.retryDue:
			retry.Stop()
			retryWait = 0
		case retryWait == 0:
			retryWait = w.cfg.Retry
			retry.Reset(retryWait)
		}
	}
	for {
		armRetry()
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.events:
			if !ok {
				return errors.New("watching apps dir: event channel closed")
			}
			w.noteEvent(ev, timer)
		case err, ok := <-w.errs:
			if !ok {
				return errors.New("watching apps dir: error channel closed")
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.log.Warn("apps dir events overflowed; rescanning everything", "dir", w.cfg.Dir)
			} else {
				w.log.Warn("watching apps dir", "dir", w.cfg.Dir, "err", err)
			}
			w.scan()
		case <-recheck:
			w.recheck()
		case <-w.rescan:
			w.log.Info("rescanning apps dir", "dir", w.cfg.Dir)
			w.scan()
		case <-timer.C:
			w.timerAt = time.Time{}
			w.reloadDue(timer)
		case <-retry.C:
			if w.retryDue {
				w.reload(nil)
			}
			if w.retryDue {
				retryWait = min(2*retryWait, maxRetryFactor*w.cfg.Retry)
				retry.Reset(retryWait)
			}
		}
	}
}

// noteEvent schedules the reload of the file an event is about.
func (w *Watcher) noteEvent(ev fsnotify.Event, timer *time.Timer) {
	if ev.Name == w.cfg.Dir {
		// The directory itself: a chmod or chown of it is judged at once.
		if w.cfg.Trust != nil && ev.Has(fsnotify.Chmod) {
			w.recheck()
		}
		return
	}
	name := filepath.Base(ev.Name)
	if strings.HasPrefix(name, "..") {
		// A Kubernetes ConfigMap swap: ..data now points at a new
		// directory, and every app file behind it may have changed
		// without an event of its own.
		w.schedule(w.cfg.Dir, timer)
		return
	}
	if _, ok := appfile.SplitAppFile(name); !ok {
		return // editor leftovers and unrelated files
	}
	w.schedule(ev.Name, timer)
}

// schedule (re)arms the debounce of path; path == Dir means "everything".
// The timer fires for the earliest deadline, so that a file written again
// and again never holds back the reload of another one.
func (w *Watcher) schedule(path string, timer *time.Timer) {
	at := time.Now().Add(w.cfg.Debounce)
	w.pending[path] = at
	w.arm(timer, at)
}

// arm makes timer fire at at, unless it already fires earlier.
func (w *Watcher) arm(timer *time.Timer, at time.Time) {
	if !w.timerAt.IsZero() && !at.Before(w.timerAt) {
		return
	}
	w.timerAt = at
	timer.Reset(time.Until(at))
}

// reloadDue reloads the files whose debounce has run out, as one change,
// and rearms the timer for the others.
func (w *Watcher) reloadDue(timer *time.Timer) {
	now := time.Now()
	var due []string
	var next time.Time
	for path, at := range w.pending {
		if !at.After(now) {
			due = append(due, path)
			delete(w.pending, path)
		} else if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if !next.IsZero() {
		w.arm(timer, next)
	}
	if len(due) == 0 {
		return // fired for a path written again since
	}
	if slices.Contains(due, w.cfg.Dir) {
		w.scan()
		return
	}
	w.reload(due)
}

// scan reloads every app file in the directory and forgets vanished ones.
func (w *Watcher) scan() {
	paths := map[string]bool{}
	for p := range w.files {
		paths[p] = true // vanished files are reloaded as removed
	}
	entries, err := os.ReadDir(w.cfg.Dir)
	if err != nil {
		w.log.Error("reading apps dir; keeping every app as it is", "dir", w.cfg.Dir, "err", err)
		return
	}
	for _, e := range entries {
		if _, ok := appfile.SplitAppFile(e.Name()); ok {
			paths[filepath.Join(w.cfg.Dir, e.Name())] = true
		}
	}
	w.reload(slices.Collect(maps.Keys(paths)))
}

// checkTrust judges Dir before a reload; false: it cannot be trusted, and
// nothing is to be read from it. The refusal is logged when it is new or
// changed, and again every distrustRepeat; the return of trust once.
func (w *Watcher) checkTrust() bool {
	if w.cfg.Trust == nil {
		return true
	}
	err := w.cfg.Trust.Dir(w.cfg.Dir, "apps directory")
	if err != nil {
		if msg := err.Error(); msg != w.distrust || time.Since(w.distrustLogged) >= distrustRepeat {
			w.log.Error("apps directory cannot be trusted: not reloading from it; the apps in force stay as they are",
				"dir", w.cfg.Dir, "err", err)
			w.distrust, w.distrustLogged = msg, time.Now()
		}
		return false
	}
	if w.distrust != "" {
		w.log.Info("apps directory can be trusted again; reloading from it", "dir", w.cfg.Dir)
		w.distrust = ""
	}
	return true
}

// recheck judges Dir between reloads, and reads every file again once it
// can be trusted after a reload was refused.
func (w *Watcher) recheck() {
	if !w.checkTrust() {
		w.stale = true
		return
	}
	if w.stale {
		w.scan()
	}
}
