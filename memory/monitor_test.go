package memory

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

// runMonitor runs a Monitor over apps until the test ends. It returns the
// monitor and its log.
func runMonitor(t *testing.T, cfg MonitorConfig) (*Monitor, *testutil.Buffer) {
	t.Helper()
	logs := &testutil.Buffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(logs, t.Output()), nil))
	if cfg.Interval == 0 {
		cfg.Interval = 10 * time.Millisecond
	}
	m := NewMonitor(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return m, logs
}

// plenty is a Reader that always reports plenty of memory, so that only the
// budget matters.
type plenty struct{}

func (plenty) Available() (int64, int64, error) { return 1 << 40, 1 << 41, nil }

// threeApps starts a, b and c allocating 64 MiB each, woken in that order
// (a least recently active), with usage tweaks, and returns their summed
// tree RSS.
func threeApps(t *testing.T, apps *testApps, tweak map[string]func(*AppUsage)) int64 {
	var sum int64
	for i, name := range []string{"a", "b", "c"} {
		u := AppUsage{LastActive: time.Now().Add(time.Duration(i-10) * time.Minute)}
		if f := tweak[name]; f != nil {
			f(&u)
		}
		sum += apps.start(name, 64, u)
	}
	return sum
}

// overBudget returns a policy whose budget the three apps exceed by 16 MiB:
// stopping any one of them brings the sum well under it.
func overBudget(sum int64) Policy {
	return Policy{Budget: sum - 16*mib, Margin: 4 * mib}
}

// checkOnlyStopped waits for a first memory stop, lets the monitor run a few
// more checks, and asserts that exactly want was stopped.
func checkOnlyStopped(t *testing.T, apps *testApps, want string) {
	t.Helper()
	waitFor(t, "a memory stop", func() bool {
		stopped, _ := apps.stops()
		return len(stopped) > 0
	})
	apps.waitSnapshots(5)
	stopped, restarted := apps.stops()
	if !slices.Equal(stopped, []string{want}) || len(restarted) != 0 {
		t.Fatalf("stopped %v, restarted %v; want only %s stopped", stopped, restarted, want)
	}
}

func TestBudgetStopsLeastRecentlyActive(t *testing.T) {
	apps := newTestApps(t)
	sum := threeApps(t, apps, nil)
	_, logs := runMonitor(t, MonitorConfig{Policy: overBudget(sum), Reader: plenty{}, Apps: apps})
	checkOnlyStopped(t, apps, "a")
	out := logs.String()
	if !strings.Contains(out, "stopped app for memory") || !strings.Contains(out, "app=a") ||
		!strings.Contains(out, "reading.apps_rss_bytes=") || !strings.Contains(out, "freed_bytes=") {
		t.Errorf("log does not record the stop with its reading and freed memory:\n%s", out)
	}
}

func TestUnderBudgetStopsNothing(t *testing.T) {
	apps := newTestApps(t)
	sum := threeApps(t, apps, nil)
	runMonitor(t, MonitorConfig{Policy: Policy{Budget: sum + 64*mib}, Reader: plenty{}, Apps: apps})
	apps.waitSnapshots(5)
	if stopped, restarted := apps.stops(); len(stopped)+len(restarted) != 0 {
		t.Fatalf("stopped %v, restarted %v under budget", stopped, restarted)
	}
}

func TestOpenConnectionProtectsApp(t *testing.T) {
	apps := newTestApps(t)
	sum := threeApps(t, apps, map[string]func(*AppUsage){
		"a": func(u *AppUsage) { u.Connections = 1 },
	})
	runMonitor(t, MonitorConfig{Policy: overBudget(sum), Reader: plenty{}, Apps: apps})
	checkOnlyStopped(t, apps, "b")
}

func TestPriorityIsHonoured(t *testing.T) {
	apps := newTestApps(t)
	sum := threeApps(t, apps, map[string]func(*AppUsage){
		"a": func(u *AppUsage) { u.Priority = 10 },
		"b": func(u *AppUsage) { u.Priority = 10 },
	})
	runMonitor(t, MonitorConfig{Policy: overBudget(sum), Reader: plenty{}, Apps: apps})
	checkOnlyStopped(t, apps, "c")
}

func TestAlwaysAppIsNeverStopped(t *testing.T) {
	apps := newTestApps(t)
	sum := threeApps(t, apps, map[string]func(*AppUsage){
		"a": func(u *AppUsage) { u.Mode = appfile.Always },
	})
	runMonitor(t, MonitorConfig{Policy: overBudget(sum), Reader: plenty{}, Apps: apps})
	checkOnlyStopped(t, apps, "b")
}

func TestLastResortCutsConnectionsWithWarning(t *testing.T) {
	apps := newTestApps(t)
	busy := func(n int) func(*AppUsage) { return func(u *AppUsage) { u.Connections = n } }
	sum := threeApps(t, apps, map[string]func(*AppUsage){"a": busy(2), "b": busy(1), "c": busy(1)})
	_, logs := runMonitor(t, MonitorConfig{Policy: overBudget(sum), Reader: plenty{}, Apps: apps})
	checkOnlyStopped(t, apps, "a")
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "connections_cut=2") {
		t.Errorf("no warning naming the 2 connections cut:\n%s", out)
	}
}

// machine is a Reader for a pretend machine whose only memory users are
// the test's apps: available memory is a fixed amount minus their real,
// measured tree RSS. The test cannot make the real machine run short.
type machine struct {
	apps *testApps
	free atomic.Int64 // available memory when no app runs
}

func (m *machine) Available() (int64, int64, error) {
	avail := m.free.Load()
	for _, pid := range m.apps.pids() {
		if rss, err := TreeRSS(pid); err == nil {
			avail -= rss
		}
	}
	return avail, 8 << 30, nil
}

func TestLowAvailableMemoryStopsAppsUntilAboveFloor(t *testing.T) {
	apps := newTestApps(t)
	sum := threeApps(t, apps, nil)
	floor := int64(1 << 30)
	mach := &machine{apps: apps}
	mach.free.Store(floor + sum + 64*mib) // plenty at first
	runMonitor(t, MonitorConfig{Policy: Policy{MinAvailableBytes: floor, Margin: 4 * mib}, Reader: mach, Apps: apps})
	apps.waitSnapshots(6)
	if stopped, _ := apps.stops(); len(stopped) != 0 {
		t.Fatalf("stopped %v above the floor", stopped)
	}
	// 16 MiB below the floor: stopping one app frees enough.
	mach.free.Store(floor + sum - 16*mib)
	checkOnlyStopped(t, apps, "a")
}

// A stop that frees less than the app's RSS promised (here: something else
// takes 32 MiB of what a gave back) leaves memory above the floor but short
// of the margin; the shortage goes on and the next check stops b. Once past
// the margin it is over: the same reading between floor and margin then
// stops nothing.
func TestFloorShortageStopsUntilPastTheMargin(t *testing.T) {
	apps := newTestApps(t)
	rss := map[string]int64{}
	for i, name := range []string{"a", "b", "c"} {
		rss[name] = apps.start(name, 64, AppUsage{LastActive: time.Now().Add(time.Duration(i-10) * time.Minute)})
	}
	floor, margin := int64(1<<30), int64(32*mib)
	mach := &machine{apps: apps}
	var once sync.Once
	apps.afterStop = func(string) {
		// a's stop gives back a's RSS, but all other than 32 MiB of it is
		// taken at once: available memory ends 16 MiB above the floor.
		once.Do(func() { mach.free.Add(-(rss["a"] - 32*mib)) })
	}
	mach.free.Store(floor - 16*mib + rss["a"] + rss["b"] + rss["c"]) // 16 MiB below the floor
	_, logs := runMonitor(t, MonitorConfig{Policy: Policy{MinAvailableBytes: floor, Margin: margin}, Reader: mach, Apps: apps})
	waitFor(t, "two memory stops", func() bool { stopped, _ := apps.stops(); return len(stopped) >= 2 })
	apps.waitSnapshots(5)
	if stopped, _ := apps.stops(); !slices.Equal(stopped, []string{"a", "b"}) {
		t.Fatalf("stopped %v, want a then b (a freed too little)", stopped)
	}
	waitFor(t, "the end of the shortage logged", func() bool { return strings.Contains(logs.String(), "memory shortage over") })
	// 16 MiB above the floor again, short of the margin, but no shortage
	// is under way: nothing is stopped.
	mach.free.Add(-rss["b"])
	apps.waitSnapshots(5)
	if stopped, _ := apps.stops(); len(stopped) != 2 {
		t.Fatalf("stopped %v between floor and margin outside a shortage", stopped)
	}
}

// Over budget, a stops; meanwhile d starts, and the sum lands under the
// budget but over budget-margin: the shortage goes on until b stops too.
func TestBudgetShortageStopsUntilUnderTheMargin(t *testing.T) {
	apps := newTestApps(t)
	var sum int64
	rss := map[string]int64{}
	for i, name := range []string{"a", "b", "c"} {
		rss[name] = apps.start(name, 64, AppUsage{LastActive: time.Now().Add(time.Duration(i-10) * time.Minute)})
		sum += rss[name]
	}
	d := startHelper(t, 40, false) // 24 MiB less than a: the sum ends 16 MiB under budget
	var once sync.Once
	apps.afterStop = func(string) {
		once.Do(func() { apps.add("d", d, 40, AppUsage{LastActive: time.Now()}) })
	}
	budget := sum - 8*mib
	runMonitor(t, MonitorConfig{Policy: Policy{Budget: budget, Margin: 32 * mib}, Reader: plenty{}, Apps: apps})
	waitFor(t, "two memory stops", func() bool { stopped, _ := apps.stops(); return len(stopped) >= 2 })
	apps.waitSnapshots(5)
	if stopped, _ := apps.stops(); !slices.Equal(stopped, []string{"a", "b"}) {
		t.Fatalf("stopped %v, want a then b (d took what a freed)", stopped)
	}
}

func TestMemoryMaxRestartsIdleApp(t *testing.T) {
	apps := newTestApps(t)
	rss := apps.start("leaky", 64, AppUsage{LastActive: time.Now()})
	// Over the limit, but not 1.5 times over it.
	limit := rss - 8*mib
	apps.mu.Lock()
	apps.apps["leaky"].usage.MemoryMax = limit
	apps.mu.Unlock()
	runMonitor(t, MonitorConfig{Reader: plenty{}, Apps: apps})
	waitFor(t, "a restart", func() bool { _, r := apps.stops(); return len(r) > 0 })
	apps.waitSnapshots(5)
	stopped, restarted := apps.stops()
	if len(stopped) != 0 || !slices.Equal(restarted, []string{"leaky"}) {
		t.Fatalf("stopped %v, restarted %v; want leaky restarted once", stopped, restarted)
	}
}

func TestMemoryMaxWaitsForIdleMoment(t *testing.T) {
	apps := newTestApps(t)
	rss := apps.start("leaky", 64, AppUsage{LastActive: time.Now(), Connections: 1})
	apps.mu.Lock()
	apps.apps["leaky"].usage.MemoryMax = rss - 8*mib
	apps.mu.Unlock()
	runMonitor(t, MonitorConfig{Reader: plenty{}, Apps: apps})
	apps.waitSnapshots(5)
	if stopped, restarted := apps.stops(); len(stopped)+len(restarted) != 0 {
		t.Fatalf("busy app acted on: stopped %v, restarted %v", stopped, restarted)
	}
	apps.mu.Lock()
	apps.apps["leaky"].usage.Connections = 0
	apps.mu.Unlock()
	waitFor(t, "a restart once idle", func() bool { _, r := apps.stops(); return len(r) == 1 })
}

func TestMemoryMaxFarOverStopsAtOnce(t *testing.T) {
	apps := newTestApps(t)
	rss := apps.start("leaky", 64, AppUsage{LastActive: time.Now(), Connections: 1})
	apps.mu.Lock()
	apps.apps["leaky"].usage.MemoryMax = rss / 2
	apps.mu.Unlock()
	runMonitor(t, MonitorConfig{Reader: plenty{}, Apps: apps})
	checkOnlyStopped(t, apps, "leaky")
}

func TestMakeRoomUsesLastPeak(t *testing.T) {
	apps := newTestApps(t)
	sum := threeApps(t, apps, nil)
	m := NewMonitor(MonitorConfig{
		Policy: overBudget(sum + 32*mib), // the three fit; a fourth 64 MiB app does not
		Reader: plenty{},
		Apps:   apps,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	ctx := context.Background()
	if stops := m.Check(ctx); len(stops) != 0 {
		t.Fatalf("check stopped %+v", stops)
	}
	peak := apps.start("big", 64, AppUsage{LastActive: time.Now()})
	m.Check(ctx) // observes big's peak (and stops one of a, b, c: over budget)
	if got := m.PeakRSS("big"); got < peak*9/10 {
		t.Fatalf("PeakRSS(big) = %d, want about %d", got, peak)
	}
	stopped, _ := apps.stops()
	apps.stop("big") // idle stop
	for _, name := range []string{"a", "b", "c"} {
		if !slices.Contains(stopped, name) {
			continue
		}
		apps.start(name, 64, AppUsage{LastActive: time.Now()}) // woken again
	}
	before, _ := apps.stops()
	m.MakeRoom(ctx, "big") // sees big stopped, expects its last peak
	after, _ := apps.stops()
	if got := m.PeakRSS("big"); got < peak*9/10 {
		t.Fatalf("PeakRSS(big) = %d after its run ended, want the last run's peak %d", got, peak)
	}
	if len(after) != len(before)+1 {
		t.Fatalf("MakeRoom stopped %v, want one app", after[len(before):])
	}
}

func TestMakeRoomForUnknownAppStopsNothing(t *testing.T) {
	apps := newTestApps(t)
	sum := threeApps(t, apps, nil)
	m := NewMonitor(MonitorConfig{Policy: overBudget(sum + 32*mib), Reader: plenty{}, Apps: apps,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	m.MakeRoom(context.Background(), "never-seen")
	if stopped, _ := apps.stops(); len(stopped) != 0 {
		t.Fatalf("stopped %v for an app of unknown size", stopped)
	}
}

func TestStalledShare(t *testing.T) {
	tests := []struct {
		name        string
		prev, total uint64
		elapsed     time.Duration
		want        float64
	}{
		{"NoStall", 500, 500, time.Second, 0},
		{"TenPercent", 0, 100_000, time.Second, 0.1},
		{"AllTheTime", 1000, 251_000, 250 * time.Millisecond, 1},
		{"CounterWentBack", 900, 100, time.Second, 0},
		{"NoTimePassed", 0, 100, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stalledShare(tt.prev, tt.total, tt.elapsed); got < tt.want-1e-9 || got > tt.want+1e-9 {
				t.Fatalf("stalledShare = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestShortageWithNothingToStopWarnsOnce(t *testing.T) {
	apps := newTestApps(t)
	rss := apps.start("core", 64, AppUsage{Mode: appfile.Always})
	_, logs := runMonitor(t, MonitorConfig{Policy: Policy{Budget: rss / 2}, Reader: plenty{}, Apps: apps})
	waitFor(t, "the shortage warning", func() bool { return strings.Contains(logs.String(), "not enough apps left to stop") })
	apps.waitSnapshots(5)
	if n := strings.Count(logs.String(), "not enough apps left to stop"); n != 1 {
		t.Fatalf("warned %d times over several checks, want once", n)
	}
	if stopped, restarted := apps.stops(); len(stopped)+len(restarted) != 0 {
		t.Fatalf("always app acted on: stopped %v, restarted %v", stopped, restarted)
	}
}

// brokenReader fails as a missing /proc/meminfo would.
type brokenReader struct{}

func (brokenReader) Available() (int64, int64, error) {
	return 0, 0, errors.New("reading meminfo: no such file")
}

func TestBudgetWorksWhenMeminfoCannotBeRead(t *testing.T) {
	apps := newTestApps(t)
	sum := threeApps(t, apps, nil)
	p := overBudget(sum)
	p.MinAvailablePercent = 50 // cannot be checked without meminfo; must not stop all
	_, logs := runMonitor(t, MonitorConfig{Policy: p, Reader: brokenReader{}, Apps: apps})
	checkOnlyStopped(t, apps, "a")
	if n := strings.Count(logs.String(), "reading available memory"); n != 1 {
		t.Errorf("the meminfo error was logged %d times, want once:\n%s", n, logs.String())
	}
}

func TestLastRSSReportsTheLastCheck(t *testing.T) {
	apps := newTestApps(t)
	rss := apps.start("a", 64, AppUsage{})
	m := NewMonitor(MonitorConfig{Reader: plenty{}, Apps: apps, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if got := m.LastRSS("a"); got != 0 {
		t.Fatalf("LastRSS before any check = %d", got)
	}
	m.Check(context.Background())
	if got := m.LastRSS("a"); got < rss*9/10 || got > rss*11/10 {
		t.Fatalf("LastRSS = %d, want about %d", got, rss)
	}
	apps.stop("a")
	m.Check(context.Background())
	if got := m.LastRSS("a"); got != 0 {
		t.Fatalf("LastRSS of a stopped app = %d", got)
	}
}

// psiFeed is a PSI reading the test sets: the kernel's cannot be made to
// stall on demand.
type psiFeed struct {
	psi   PSI
	ok    bool
	err   error
	reads int
}

func (f *psiFeed) read() (PSI, bool, error) {
	f.reads++
	return f.psi, f.ok, f.err
}

func TestNextIntervalIsFastWhileTasksStallOnMemory(t *testing.T) {
	feed := &psiFeed{ok: true, psi: PSI{SomeTotal: 1000}}
	m := NewMonitor(MonitorConfig{Apps: newTestApps(t), Interval: time.Second, FastInterval: 100 * time.Millisecond})
	m.readPSI = feed.read
	if got := m.nextInterval(); got != time.Second {
		t.Fatalf("first look (nothing to compare with) = %v, want the interval", got)
	}
	// 10 s of stall since the last look, which was well under 10 s ago.
	feed.psi.SomeTotal += 10_000_000
	if got := m.nextInterval(); got != 100*time.Millisecond {
		t.Fatalf("while stalled = %v, want the fast interval", got)
	}
	// No stall since: back to the interval.
	if got := m.nextInterval(); got != time.Second {
		t.Fatalf("after the stall = %v, want the interval", got)
	}
	// A stall counter that went backwards counts as none.
	feed.psi.SomeTotal = 10
	if got := m.nextInterval(); got != time.Second {
		t.Fatalf("after the counter went back = %v, want the interval", got)
	}
}

func TestNextIntervalWithoutPSI(t *testing.T) {
	tests := []struct {
		name  string
		feed  psiFeed
		share float64
		reads int
	}{
		{"KernelWithoutPSI", psiFeed{ok: false}, 0, 2},
		{"ReadError", psiFeed{err: errors.New("reading memory pressure: permission denied")}, 0, 2},
		{"PSIIgnored", psiFeed{ok: true}, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMonitor(MonitorConfig{Apps: newTestApps(t), Interval: time.Second, FastInterval: time.Millisecond, PSIStallShare: tt.share})
			m.readPSI = tt.feed.read
			for range 2 {
				tt.feed.psi.SomeTotal += 10_000_000 // would be a stall, were it read
				if got := m.nextInterval(); got != time.Second {
					t.Fatalf("nextInterval = %v, want the interval", got)
				}
			}
			if tt.feed.reads != tt.reads {
				t.Errorf("PSI read %d times, want %d", tt.feed.reads, tt.reads)
			}
		})
	}
}

// countingReader counts the readings of available memory (one per check).
type countingReader struct{ n atomic.Int64 }

func (r *countingReader) Available() (int64, int64, error) {
	r.n.Add(1)
	return 1 << 40, 1 << 41, nil
}

func TestChecksSlowDownWhileNoAppRunsAndResumeBeforeAStart(t *testing.T) {
	apps := newTestApps(t)
	m := NewMonitor(MonitorConfig{Apps: apps, Interval: time.Second, IdleInterval: time.Hour})
	m.readPSI = (&psiFeed{ok: false}).read
	m.Check(context.Background())
	if d, idle := m.nextWait(); d != time.Hour || !idle {
		t.Fatalf("nothing running: next check in %v (idle %v), want the idle interval", d, idle)
	}
	apps.start("a", 1, AppUsage{})
	m.Check(context.Background())
	if d, idle := m.nextWait(); d != time.Second || idle {
		t.Fatalf("an app running: next check in %v (idle %v), want the interval", d, idle)
	}

	// Run: after its first check it waits an hour, until a start comes.
	reader := &countingReader{}
	apps2 := newTestApps(t)
	m2, _ := runMonitor(t, MonitorConfig{Apps: apps2, Reader: reader, IdleInterval: time.Hour})
	testutil.Eventually(t, 10*time.Second, func() bool { return reader.n.Load() >= 1 }, "no first check")
	m2.MakeRoom(context.Background(), "a") // no floor or budget: reads nothing itself
	testutil.Eventually(t, 10*time.Second, func() bool { return reader.n.Load() >= 2 }, "no check after a start while idle")
}
