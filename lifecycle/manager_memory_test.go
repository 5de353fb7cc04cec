package lifecycle

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
	"github.com/dynapm/dynapm/memory"
)

// plentyOfMemory reports a machine with memory to spare, so that only the
// budget (over real, measured tree RSS) decides.
type plentyOfMemory struct{}

func (plentyOfMemory) Available() (int64, int64, error) { return 1 << 40, 1 << 41, nil }

const mib = 1 << 20

// allocApps applies on-demand apps allocating 64 MiB each and wakes them in
// turn, the first least recently active. It returns their summed tree RSS.
func allocApps(h *harness, names ...string) int64 {
	h.t.Helper()
	var specs []*appfile.Spec
	for _, n := range names {
		specs = append(specs, h.spec(n, "-alloc", "64"))
	}
	h.m.Apply(specs)
	return wakeInTurn(h, names...)
}

// wakeInTurn wakes the apps in turn (each lease released at once) and
// returns their summed tree RSS.
func wakeInTurn(h *harness, names ...string) int64 {
	h.t.Helper()
	var sum int64
	for _, n := range names {
		_, release := h.wake(n)
		release()
		if h.status(n).Pid == 0 {
			continue // no tree to measure (the memoryDriver's noPid apps)
		}
		rss, err := memory.TreeRSS(h.status(n).Pid)
		if err != nil {
			h.t.Fatal(err)
		}
		sum += rss
	}
	return sum
}

func TestMemoryBudgetStopsLeastRecentlyActiveApp(t *testing.T) {
	h := newHarness(t)
	sum := allocApps(h, "a", "b", "c")
	mon := memory.NewMonitor(memory.MonitorConfig{
		Policy: memory.Policy{Budget: sum - 16*mib, Margin: 4 * mib},
		Reader: plentyOfMemory{},
		Apps:   h.m,
		Logger: h.cfg.Logger,
	})
	stops := mon.Check(context.Background())
	if len(stops) != 1 || stops[0].App != "a" {
		t.Fatalf("memory check stopped %+v, want a", stops)
	}
	h.waitState("a", Stopped)
	h.waitLog("app stopped", "app=a", "reason=\"memory: over budget\"")
	for _, n := range []string{"b", "c"} {
		if st := h.status(n); st.State != Ready {
			t.Errorf("%s is %s, want ready", n, st.State)
		}
	}
	// Under budget now: a second check stops nothing.
	if stops := mon.Check(context.Background()); len(stops) != 0 {
		t.Fatalf("second check stopped %+v", stops)
	}
}

func TestMemoryOpenConnectionProtectsApp(t *testing.T) {
	h := newHarness(t)
	sum := allocApps(h, "a", "b", "c")
	_, release := h.wake("a") // a has a connection open now
	defer release()
	h.m.mu.Lock()
	h.m.apps["a"].lastActivity = time.Now().Add(-time.Hour) // and is still the oldest
	h.m.mu.Unlock()
	mon := memory.NewMonitor(memory.MonitorConfig{
		Policy: memory.Policy{Budget: sum - 16*mib, Margin: 4 * mib},
		Reader: plentyOfMemory{},
		Apps:   h.m,
		Logger: h.cfg.Logger,
	})
	if stops := mon.Check(context.Background()); len(stops) != 1 || stops[0].App != "b" {
		t.Fatalf("memory check stopped %+v, want b", stops)
	}
	if st := h.status("a"); st.State != Ready {
		t.Errorf("a is %s, want ready", st.State)
	}
}

func TestMemoryMakeRoomBeforeStart(t *testing.T) {
	var mon *memory.Monitor
	h := newHarness(t, func(c *Config) {
		c.BeforeStart = func(ctx context.Context, app string) { mon.MakeRoom(ctx, app) }
	})
	mon = memory.NewMonitor(memory.MonitorConfig{Reader: plentyOfMemory{}, Apps: h.m, Logger: h.cfg.Logger})
	ctx := context.Background()
	h.m.Apply([]*appfile.Spec{h.spec("a", "-alloc", "64"), h.spec("b", "-alloc", "64"), h.spec("c", "-alloc", "64")})
	one := wakeInTurn(h, "c")
	mon.Check(ctx) // sees c's peak
	if err := h.m.Stop(ctx, "c", "idle"); err != nil {
		t.Fatal(err)
	}
	wakeInTurn(h, "a", "b")
	// Room for two such apps, not for three.
	mon.SetPolicy(memory.Policy{Budget: 2*one + 32*mib, Margin: 4 * mib})
	if stops := mon.Check(ctx); len(stops) != 0 {
		t.Fatalf("check stopped %+v with two apps", stops)
	}
	_, release := h.wake("c")
	release()
	h.waitLog("app stopped", "app=a", `reason="memory: making room"`)
	for _, n := range []string{"b", "c"} {
		if st := h.status(n); st.State != Ready {
			t.Errorf("%s is %s, want ready", n, st.State)
		}
	}
}

func TestMemoryMaxRestartsPersistentApp(t *testing.T) {
	h := newHarness(t)
	spec := h.spec("leaky", "-alloc", "64")
	spec.Mode = appfile.Persistent
	h.m.Apply([]*appfile.Spec{spec})
	st := h.waitState("leaky", Ready)
	rss, err := memory.TreeRSS(st.Pid)
	if err != nil {
		t.Fatal(err)
	}
	spec2 := *spec
	spec2.MemoryMax = rss - 8*mib // over it, not far over
	h.m.Apply([]*appfile.Spec{&spec2})
	mon := memory.NewMonitor(memory.MonitorConfig{Reader: plentyOfMemory{}, Apps: h.m, Logger: h.cfg.Logger})
	mon.Check(context.Background())
	after := h.waitState("leaky", Ready)
	if after.Pid == st.Pid || after.Restarts != 1 {
		t.Fatalf("after the check: pid %d (was %d), %d restarts; want a new process", after.Pid, st.Pid, after.Restarts)
	}
	h.waitLog("app stopped", "app=leaky", "memory_max")
}

func TestMemoryMaxStopsIdleOnDemandApp(t *testing.T) {
	h := newHarness(t)
	allocApps(h, "leaky")
	rss, err := memory.TreeRSS(h.status("leaky").Pid)
	if err != nil {
		t.Fatal(err)
	}
	spec := h.spec("leaky", "-alloc", "64")
	spec.MemoryMax = rss - 8*mib
	h.m.Apply([]*appfile.Spec{spec})
	mon := memory.NewMonitor(memory.MonitorConfig{Reader: plentyOfMemory{}, Apps: h.m, Logger: h.cfg.Logger})
	mon.Check(context.Background())
	h.waitState("leaky", Stopped)
	usage := h.m.MemoryUsage()
	if i := slices.IndexFunc(usage, func(u memory.AppUsage) bool { return u.Name == "leaky" }); i < 0 || usage[i].Pid != 0 || usage[i].MemoryMax != spec.MemoryMax {
		t.Fatalf("MemoryUsage = %+v", usage)
	}
}

func TestMemoryUsageLeavesOutAppsThatNeverRan(t *testing.T) {
	h := newHarness(t)
	h.m.Apply([]*appfile.Spec{h.spec("ran"), h.spec("idle")})
	wakeInTurn(h, "ran")
	var names []string
	for _, u := range h.m.MemoryUsage() {
		names = append(names, u.Name)
	}
	if !slices.Equal(names, []string{"ran"}) {
		t.Fatalf("MemoryUsage lists %v, want only the app that ran", names)
	}
	if err := h.m.Stop(context.Background(), "ran", "manual"); err != nil {
		t.Fatal(err)
	}
	if u := h.m.MemoryUsage(); len(u) != 1 || u[0].Pid != 0 {
		t.Fatalf("a stopped app that ran must stay listed (its peak is remembered), with no pid: %+v", u)
	}
	h.m.Apply(nil)
	testutil.Eventually(t, 10*time.Second, func() bool { return len(h.m.MemoryUsage()) == 0 },
		"a removed app is still listed")
}

// memoryDriver is the exec driver as another driver would look to the
// memory policy: the processes of the apps in reports say their own memory
// (as a container's engine figure does), settable while they run; those of
// the apps in noPid show no pid (as a Swarm service or a command driver
// app).
type memoryDriver struct {
	Driver
	reports map[string]*atomic.Uint64
	noPid   map[string]bool
}

func (d memoryDriver) Start(ctx context.Context, req StartRequest) (Process, error) {
	p, err := d.Driver.Start(ctx, req)
	switch {
	case err != nil:
		return nil, err
	case d.reports[req.Spec.Name] != nil:
		return reportingProcess{p, d.reports[req.Spec.Name]}, nil
	case d.noPid[req.Spec.Name]:
		return noPidProcess{p}, nil
	}
	return p, nil
}

type reportingProcess struct {
	Process
	bytes *atomic.Uint64
}

func (p reportingProcess) MemoryBytes(context.Context) (uint64, error) { return p.bytes.Load(), nil }

type noPidProcess struct{ Process }

func (noPidProcess) Pid() int { return 0 }

// The budget counts what a MemoryReporter says, not the process tree: big
// and small are small programs, but once big reports 512 MiB it is over a
// 256 MiB budget and big alone is stopped. The first check reads the
// figures of processes new to it; the second those read before it decides.
func TestMemoryBudgetCountsTheFigureAProcessReports(t *testing.T) {
	reports := map[string]*atomic.Uint64{"big": {}, "small": {}}
	reports["big"].Store(100 * mib)
	reports["small"].Store(4 * mib)
	h := newHarness(t, func(c *Config) { c.Driver = memoryDriver{Driver: c.Driver, reports: reports} })
	h.m.Apply([]*appfile.Spec{h.spec("big"), h.spec("small")})
	wakeInTurn(h, "big", "small")
	mon := memory.NewMonitor(memory.MonitorConfig{
		Policy: memory.Policy{Budget: 256 * mib, Margin: 8 * mib},
		Reader: plentyOfMemory{},
		Apps:   h.m,
		Logger: h.cfg.Logger,
	})
	ctx := context.Background()
	if stops := mon.Check(ctx); len(stops) != 0 {
		t.Fatalf("check stopped %+v under budget", stops)
	}
	if got := mon.LastRSS("small"); got != 4*mib {
		t.Fatalf("LastRSS(small) = %d, want the 4 MiB it reports, not its tree's", got)
	}
	reports["big"].Store(512 * mib)
	stops := mon.Check(ctx)
	if len(stops) != 1 || stops[0].App != "big" || stops[0].RSS != 512*mib {
		t.Fatalf("memory check stopped %+v, want big with its 512 MiB", stops)
	}
	h.waitState("big", Stopped)
	if st := h.status("small"); st.State != Ready {
		t.Errorf("small is %s, want ready", st.State)
	}
}

// An app whose driver gives neither a pid nor a figure counts 0: it is
// listed, but never stopped for memory, even with a budget it would exceed.
func TestMemoryAppWithNeitherPidNorFigureCountsZero(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Driver = memoryDriver{Driver: c.Driver, noPid: map[string]bool{"svc": true}} })
	h.m.Apply([]*appfile.Spec{h.spec("svc", "-alloc", "64")})
	wakeInTurn(h, "svc")
	mon := memory.NewMonitor(memory.MonitorConfig{
		Policy: memory.Policy{Budget: 1 * mib},
		Reader: plentyOfMemory{},
		Apps:   h.m,
		Logger: h.cfg.Logger,
	})
	if stops := mon.Check(context.Background()); len(stops) != 0 {
		t.Fatalf("check stopped %+v", stops)
	}
	usage := h.m.MemoryUsage()
	if len(usage) != 1 || usage[0].Name != "svc" || usage[0].Pid != 0 || len(usage[0].Reporters) != 0 {
		t.Fatalf("MemoryUsage = %+v, want svc without pid or reporter", usage)
	}
	if got := mon.LastRSS("svc"); got != 0 {
		t.Errorf("LastRSS(svc) = %d, want 0", got)
	}
	if st := h.status("svc"); st.State != Ready {
		t.Errorf("svc is %s, want ready", st.State)
	}
}
