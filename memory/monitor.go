package memory

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Reader reads the machine's memory. The real one is MeminfoReader; tests
// feed low readings through it, which a test cannot make real.
type Reader interface {
	// Available returns MemAvailable and MemTotal in bytes.
	Available() (avail, total int64, err error)
}

// Apps is the part of the lifecycle manager the Monitor drives.
type Apps interface {
	// MemoryUsage returns every configured app.
	MemoryUsage() []AppUsage
	// StopForMemory stops app, even with open connections, and returns
	// once it is stopped (or at least stopping, which MemoryUsage then shows).
	// The app starts again on its next connection.
	StopForMemory(ctx context.Context, app, reason string) error
	// RestartForMemory replaces app's process with a fresh one: the app
	// grew past its memory_max.
	RestartForMemory(ctx context.Context, app, reason string) error
}

// Defaults for MonitorConfig fields left zero.
const (
	DefaultInterval      = time.Second
	DefaultReportTimeout = 5 * time.Second
	// DefaultPSIStallShare: when tasks stalled on memory for this share of
	// the time since the last check, the next check comes at FastInterval.
	DefaultPSIStallShare = 0.01
)

// MonitorConfig holds a Monitor's settings. Zero values take the defaults.
type MonitorConfig struct {
	// Policy says when to stop apps.
	Policy Policy
	// Interval is the time between checks (default 1s).
	Interval time.Duration
	// FastInterval is the time between checks while the kernel reports
	// memory stalls (default Interval/4).
	FastInterval time.Duration
	// IdleInterval is the time between checks while no app runs (default
	// 10 × Interval): nothing could be stopped then, and MakeRoom, which
	// the daemon calls before every start, brings back the usual pace. A
	// daemon of rarely used apps is idle most of the time, and this check
	// would then be most of its CPU time (docs/BENCHMARKS.md, memory
	// monitor).
	IdleInterval time.Duration
	// PSIStallShare is the share of time stalled on memory (from
	// /proc/pressure/memory) that switches to FastInterval; default 1%,
	// negative to ignore PSI.
	PSIStallShare float64
	// Reader reads MemAvailable; nil means MeminfoReader.
	Reader Reader
	// ReportTimeout bounds each check's reading of the memory that app
	// instances report themselves (AppUsage.Reporters: a Docker Engine
	// stats call); default 5s.
	ReportTimeout time.Duration
	// Apps is the lifecycle manager. Required.
	Apps Apps
	// Logger receives memory stops; nil means slog.Default().
	Logger *slog.Logger
}

// Monitor checks memory at an interval and stops apps as Policy decides. It
// also remembers each app's peak RSS, which MakeRoom uses as the expected
// size of an app about to start. Its methods are safe for concurrent use.
type Monitor struct {
	cfg MonitorConfig
	log *slog.Logger

	// mu serialises checks and MakeRoom from deciding to the end of the
	// stops, so two deciders never count the same memory as freed twice.
	// It guards peaks, reportFailing, shortage, short, readFailing, running
	// and cfg.Policy; the methods that must be called with it held end in
	// Locked.
	mu    sync.Mutex
	peaks map[string]*peak
	// measured holds the tree RSS of each running app at the last read. It
	// is swapped whole, not under mu, so that LastRSS never waits for a
	// check that is stopping apps.
	measured atomic.Pointer[map[string]measuredRSS]
	// reporting lists the apps with Reporters at the last read: the next
	// check reads their figures before it takes mu, so that a slow engine
	// does not hold up MakeRoom on the cold-start path.
	reporting atomic.Pointer[[]reportingApp]
	// reportFailing holds the apps whose Reporters failed at the last read,
	// to log it once per failing streak.
	reportFailing map[string]bool
	// shortage is the limits the last check found memory short of: they
	// stay short until memory is back past their margin.
	shortage Shortage
	// short remembers that the last check could not free enough, so the
	// warning is logged once per shortage, not at every check.
	short bool
	// readFailing remembers that the Reader failed, to log it once.
	readFailing bool

	// running says the last check saw an app running (under mu).
	running bool
	// starting gets a token when MakeRoom is called: a program is about
	// to start, so Run goes back from IdleInterval to the usual pace.
	starting chan struct{}
	// psiTotal and psiAt are the last PSI reading, for the stall share.
	psiTotal uint64
	psiAt    time.Time
	// readPSI is ReadPSI; tests feed stalls through it, which they cannot
	// make real.
	readPSI func() (PSI, bool, error)
}

// peak tracks one app's RSS peaks across runs.
type peak struct {
	pid     int   // the run being observed (AppUsage.runID), 0 when none
	run     int64 // peak of that run
	lastRun int64 // peak of the last run that ended
}

// measuredRSS is one app's tree RSS and the process it was measured for.
type measuredRSS struct {
	pid int
	rss int64
	// reporters is the number of Reporters whose figures rss sums, 0 for
	// a process tree.
	reporters int
}

// NewMonitor returns a Monitor; Run starts it.
func NewMonitor(cfg MonitorConfig) *Monitor {
	if cfg.Apps == nil {
		panic("memory: MonitorConfig.Apps is required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.FastInterval <= 0 {
		cfg.FastInterval = cfg.Interval / 4
	}
	if cfg.IdleInterval <= 0 {
		cfg.IdleInterval = 10 * cfg.Interval
	}
	if cfg.PSIStallShare == 0 {
		cfg.PSIStallShare = DefaultPSIStallShare
	}
	if cfg.Reader == nil {
		cfg.Reader = MeminfoReader{}
	}
	if cfg.ReportTimeout <= 0 {
		cfg.ReportTimeout = DefaultReportTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Monitor{
		cfg: cfg, log: cfg.Logger, readPSI: ReadPSI, starting: make(chan struct{}, 1),
		peaks: make(map[string]*peak), reportFailing: make(map[string]bool),
	}
}

// Run checks memory every Interval (sooner while the kernel reports memory
// stalls, every IdleInterval while no app runs) until ctx ends. Call it
// once.
func (m *Monitor) Run(ctx context.Context) {
	t := time.NewTimer(0) // first check at once
	defer t.Stop()
	idle := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.starting:
			if idle {
				t.Reset(m.cfg.Interval)
				idle = false
			}
			continue
		case <-t.C:
		}
		m.Check(ctx)
		var d time.Duration
		d, idle = m.nextWait()
		t.Reset(d)
	}
}

// nextWait is the time until the next check: nextInterval, or
// IdleInterval (idle) if the last check saw no app running.
func (m *Monitor) nextWait() (d time.Duration, idle bool) {
	d = m.nextInterval()
	m.mu.Lock()
	running := m.running
	m.mu.Unlock()
	if !running && m.cfg.IdleInterval > d {
		return m.cfg.IdleInterval, true
	}
	return d, false
}

// nextInterval returns FastInterval when tasks stalled on memory for more
// than PSIStallShare of the time since the last look, else Interval.
func (m *Monitor) nextInterval() time.Duration {
	if m.cfg.PSIStallShare < 0 {
		return m.cfg.Interval
	}
	p, ok, err := m.readPSI()
	if err != nil || !ok {
		return m.cfg.Interval
	}
	now := time.Now()
	prevTotal, prevAt := m.psiTotal, m.psiAt
	m.psiTotal, m.psiAt = p.SomeTotal, now
	if !prevAt.IsZero() && stalledShare(prevTotal, p.SomeTotal, now.Sub(prevAt)) > m.cfg.PSIStallShare {
		return m.cfg.FastInterval
	}
	return m.cfg.Interval
}

// stalledShare returns the share of elapsed time in which some task stalled
// on memory, from two readings of PSI's "some total" (microseconds). A
// counter that went backwards (it never should) counts as no stall.
func stalledShare(prevTotal, total uint64, elapsed time.Duration) float64 {
	if total < prevTotal || elapsed <= 0 {
		return 0
	}
	stalled := time.Duration(total-prevTotal) * time.Microsecond
	return float64(stalled) / float64(elapsed)
}

// SetPolicy replaces the policy, for example after the daemon's settings
// changed; the next check applies it.
func (m *Monitor) SetPolicy(p Policy) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg.Policy = p
}

// LastRSS returns app's tree RSS as measured by the last check (or
// MakeRoom), 0 when it was not running then: for status and metrics, which
// need not read /proc again.
func (m *Monitor) LastRSS(app string) int64 {
	if ms := m.measured.Load(); ms != nil {
		return (*ms)[app].rss
	}
	return 0
}

// PeakRSS returns the highest tree RSS observed for app in the run the last
// check saw (current or just ended), or in its last run when the last check
// saw it stopped; 0 when never observed.
func (m *Monitor) PeakRSS(app string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peakLocked(app)
}

// peakLocked is PeakRSS with m.mu held.
func (m *Monitor) peakLocked(app string) int64 {
	p := m.peaks[app]
	if p == nil {
		return 0
	}
	if p.pid != 0 {
		return p.run
	}
	return p.lastRun
}
