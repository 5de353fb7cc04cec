package memory

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dynapm/dynapm/appfile"
	"github.com/dynapm/dynapm/internal/testutil"
)

// testApps stands in for the lifecycle manager (which lands separately):
// each app is a real helper process allocating real memory, and stopping
// one kills its process group for real.
type testApps struct {
	t  testing.TB
	mu sync.Mutex
	// apps holds the usage to report; its Pid is the live helper's.
	apps      map[string]*testApp
	snapshots int
	stopped   []string
	restarted []string
	// afterStop, when set, runs after each memory stop, before
	// StopForMemory returns (so before the Monitor's next check).
	afterStop func(name string)
}

type testApp struct {
	usage AppUsage
	mib   int
	h     *helper
}

func newTestApps(t testing.TB) *testApps {
	return &testApps{t: t, apps: make(map[string]*testApp)}
}

// start starts app with a helper allocating mib MiB; usage gives its other
// fields. It returns the tree RSS measured once the memory is touched.
func (ta *testApps) start(name string, mib int, usage AppUsage) int64 {
	ta.t.Helper()
	h := startHelper(ta.t, mib, false)
	rss, err := TreeRSS(h.pid())
	if err != nil {
		ta.t.Fatal(err)
	}
	ta.add(name, h, mib, usage)
	return rss
}

// add reports the already started helper h as app name from now on. It
// does not touch the test, so it may run on the Monitor's goroutines.
func (ta *testApps) add(name string, h *helper, mib int, usage AppUsage) {
	usage.Name, usage.Pid = name, h.pid()
	if usage.Mode == "" {
		usage.Mode = appfile.OnDemand
	}
	ta.mu.Lock()
	ta.apps[name] = &testApp{usage: usage, mib: mib, h: h}
	ta.mu.Unlock()
}

// stop stops app as an idle stop would (not for memory).
func (ta *testApps) stop(name string) {
	ta.mu.Lock()
	a := ta.apps[name]
	ta.mu.Unlock()
	a.h.kill()
	ta.mu.Lock()
	a.usage.Pid, a.usage.Reporters = 0, nil
	ta.mu.Unlock()
}

func (ta *testApps) MemoryUsage() []AppUsage {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	ta.snapshots++
	out := make([]AppUsage, 0, len(ta.apps))
	for _, a := range ta.apps {
		out = append(out, a.usage)
	}
	return out
}

func (ta *testApps) StopForMemory(ctx context.Context, name, reason string) error {
	ta.mu.Lock()
	a := ta.apps[name]
	a.usage.Stopping = true
	ta.mu.Unlock()
	a.h.kill()
	ta.mu.Lock()
	a.usage.Pid, a.usage.Reporters, a.usage.Stopping = 0, nil, false
	ta.stopped = append(ta.stopped, name)
	after := ta.afterStop
	ta.mu.Unlock()
	if after != nil {
		after(name)
	}
	return nil
}

// RestartForMemory starts a fresh helper that allocates nothing, as a
// leaking program starts small again.
func (ta *testApps) RestartForMemory(ctx context.Context, name, reason string) error {
	ta.mu.Lock()
	a := ta.apps[name]
	ta.mu.Unlock()
	a.h.kill()
	h := startHelper(ta.t, 0, false)
	ta.mu.Lock()
	defer ta.mu.Unlock()
	a.h, a.usage.Pid = h, h.pid()
	ta.restarted = append(ta.restarted, name)
	return nil
}

// pids returns the pids of the running apps (without counting as a
// snapshot).
func (ta *testApps) pids() []int {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	var out []int
	for _, a := range ta.apps {
		if a.usage.Pid > 0 {
			out = append(out, a.usage.Pid)
		}
	}
	return out
}

// stops returns the apps stopped and restarted for memory so far.
func (ta *testApps) stops() (stopped, restarted []string) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return slices.Clone(ta.stopped), slices.Clone(ta.restarted)
}

// waitSnapshots waits until the Monitor has taken n more snapshots, which
// means at least n-1 more checks completed.
func (ta *testApps) waitSnapshots(n int) {
	ta.t.Helper()
	ta.mu.Lock()
	target := ta.snapshots + n
	ta.mu.Unlock()
	waitFor(ta.t, "monitor checks", func() bool {
		ta.mu.Lock()
		defer ta.mu.Unlock()
		return ta.snapshots >= target
	})
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, cond, "waiting for %s", what)
}
