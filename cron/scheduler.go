// Package cron runs DynaPM's scheduled wakeups and jobs (the wake: and jobs:
// entries of the app files) on github.com/robfig/cron/v3.
//
// A wake entry asks the lifecycle manager, through Waker, to start the app
// and keep it up for a while. A job entry runs a command to completion in
// the app's directory with the app's environment, in its own process group,
// its output appended to the app's log. cron never imports lifecycle: it
// defines the Waker it needs and the daemon passes the Manager.
package cron

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynapm/dynapm/appfile"
	rcron "github.com/robfig/cron/v3"
)

// Defaults for the Config fields left zero.
const (
	DefaultShutdownGrace = 10 * time.Second
	DefaultKillGrace     = 5 * time.Second
)

// Waker is what the scheduler needs from the lifecycle manager.
type Waker interface {
	// KeepUp starts app if it is stopped and keeps it up at least until the
	// given time (its idle timer starts after that). A call for an app that
	// is already up extends its window; it never shortens it. KeepUp must
	// not wait for the app to be ready.
	KeepUp(app string, until time.Time) error
	// WakeFor returns the address of a ready backend of app, starting it
	// first if needed (for reason, "cron"), and holds the app up until
	// release is called (exactly once). It is the same lease that a
	// connection takes (l4.Waker).
	WakeFor(ctx context.Context, app, reason string) (upstream netip.AddrPort, release func(), err error)
}

// LogOpener opens a writer for app's log (applog.Logs satisfies it). The
// job's command gets w as stdout and stderr; once the caller has closed its
// own copy of w, wait blocks until everything written to w by anyone is in
// the log (or ctx ends).
type LogOpener interface {
	Open(app string) (w *os.File, wait func(context.Context) error, err error)
}

// Config holds a Scheduler's settings. Zero values take the defaults.
type Config struct {
	// Waker starts and holds apps. Required.
	Waker Waker
	// Logger receives the scheduler's log; nil means slog.Default().
	Logger *slog.Logger
	// Logs, when set, gives each job run the writer for its output, as it
	// gives the app's own starts one: the daemon passes applog.Logs, so
	// job output counts towards the log's rotation and a job running
	// across a rotation goes on writing into the current file.
	Logs LogOpener
	// LogDir holds NAME.log, each app's log, when Logs is nil: job output
	// is appended there between marker lines naming the job. Empty means
	// the current directory.
	LogDir string
	// ShutdownGrace is how long Shutdown waits for running jobs before it
	// kills them (default DefaultShutdownGrace).
	ShutdownGrace time.Duration
	// KillGrace is how long a job that ran past its timeout has between
	// SIGTERM and SIGKILL to its process group (default DefaultKillGrace).
	KillGrace time.Duration
	// StartGroup, when set, starts each job's command (which asks for a
	// process group of its own) as its app's program runs (the app's
	// user, group, limits and umask) and guards its group, naming the
	// program run; the job calls untrack once the group is over. The
	// daemon passes the exec driver's StartGroup, so that a job runs with
	// no more rights than its app, dies with the daemon like an app does
	// (its reaper), and a later daemon stops what a dead one left. Nil
	// means cmd.Start: as the daemon's user, unguarded (tests).
	StartGroup func(cmd *exec.Cmd, spec *appfile.Spec, program string) (untrack func(), err error)
	// Location is the time zone of schedules without a CRON_TZ= prefix
	// (default time.Local).
	Location *time.Location
}

// Scheduler runs the wake and job entries of a set of apps. All methods are
// safe for concurrent use.
type Scheduler struct {
	cfg  Config
	log  *slog.Logger
	cron *rcron.Cron

	// stopping is cancelled when Shutdown begins: waits for an app to wake
	// end, jobs not yet started do not start. kill is cancelled when the
	// shutdown grace is over: running jobs' process groups are killed.
	stopping     context.Context
	stopNow      context.CancelFunc
	kill         context.Context
	killNow      context.CancelFunc
	shutdownOnce sync.Once
	shutdownErr  error
	// jobsRunning counts the job commands running now.
	jobsRunning atomic.Int64

	// mu guards everything below.
	mu      sync.Mutex
	started bool
	closed  bool
	apps    map[string]*appEntries
}

// New returns a Scheduler with no entries; Apply gives it some and Start
// sets it going.
func New(cfg Config) *Scheduler {
	if cfg.Waker == nil {
		panic("cron: Config.Waker is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = DefaultShutdownGrace
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	s := &Scheduler{cfg: cfg, log: cfg.Logger, apps: make(map[string]*appEntries)}
	s.stopping, s.stopNow = context.WithCancel(context.Background())
	s.kill, s.killNow = context.WithCancel(context.Background())
	cl := cronLogger{log: cfg.Logger}
	s.cron = rcron.New(
		rcron.WithLocation(cfg.Location),
		rcron.WithLogger(cl),
		// The entries recover their own panics (to log them with the app
		// and to release what they hold); this is the net under that.
		rcron.WithChain(rcron.Recover(cl)),
	)
	return s
}

// Start sets the scheduler going. Entries applied before fire from now on;
// a second Start, or a Start after Shutdown, does nothing.
func (s *Scheduler) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closed {
		return
	}
	s.started = true
	s.cron.Start()
}
