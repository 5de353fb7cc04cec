package memory

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynapm/dynapm/internal/testutil"
)

// testReporter stands in for a driver's figure (the Docker Engine's for a
// container, which has its own test in dockerdriver): a settable size or
// error, or a call that lasts until its context ends.
type testReporter struct {
	mu    sync.Mutex
	bytes uint64
	err   error
	hang  bool
	calls int
}

func (r *testReporter) MemoryBytes(ctx context.Context) (uint64, error) {
	r.mu.Lock()
	r.calls++
	bytes, err, hang := r.bytes, r.err, r.hang
	r.mu.Unlock()
	if hang {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return bytes, err
}

func (r *testReporter) set(bytes uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bytes, r.err = bytes, err
}

func (r *testReporter) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// reportingMonitor returns a Monitor over one real 64 MiB helper app "c"
// whose memory rep reports, and the Monitor's log.
func reportingMonitor(t *testing.T, rep *testReporter, cfg MonitorConfig) (*Monitor, *testApps, *testutil.Buffer) {
	apps := newTestApps(t)
	apps.start("c", 64, AppUsage{Reporters: []Reporter{rep}})
	logs := &testutil.Buffer{}
	cfg.Apps, cfg.Reader = apps, plenty{}
	cfg.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(logs, t.Output()), nil))
	return NewMonitor(cfg), apps, logs
}

func TestReportedMemoryCountsInsteadOfTheTree(t *testing.T) {
	rep := &testReporter{bytes: 8 * mib}
	m, _, _ := reportingMonitor(t, rep, MonitorConfig{})
	m.Check(context.Background())
	if got := m.LastRSS("c"); got != 8*mib {
		t.Fatalf("LastRSS = %d, want the 8 MiB reported, not the 64 MiB tree", got)
	}
}

func TestFailingReporterKeepsTheLastFigureAndWarnsOnce(t *testing.T) {
	rep := &testReporter{bytes: 100 * mib}
	m, _, logs := reportingMonitor(t, rep, MonitorConfig{})
	ctx := context.Background()
	m.Check(ctx)
	rep.set(0, errors.New("engine unreachable"))
	for range 3 {
		m.Check(ctx)
		if got := m.LastRSS("c"); got != 100*mib {
			t.Fatalf("LastRSS while the reporter fails = %d, want the last figure %d", got, 100*mib)
		}
	}
	if n := strings.Count(logs.String(), "reading the memory an app reports"); n != 1 {
		t.Fatalf("the failure was logged %d times over 3 checks, want once:\n%s", n, logs.String())
	}
	rep.set(20*mib, nil)
	m.Check(ctx)
	if got := m.LastRSS("c"); got != 20*mib {
		t.Fatalf("LastRSS once the reporter works again = %d, want %d", got, 20*mib)
	}
}

func TestHangingReporterIsBoundedByReportTimeout(t *testing.T) {
	rep := &testReporter{hang: true}
	m, _, logs := reportingMonitor(t, rep, MonitorConfig{ReportTimeout: 50 * time.Millisecond})
	m.Check(context.Background()) // returns: the call is cut off at 50ms
	m.Check(context.Background())
	if !strings.Contains(logs.String(), "context deadline exceeded") {
		t.Fatalf("no warning about the timed-out reporter:\n%s", logs.String())
	}
}

// MakeRoom runs on the cold-start path: it asks no reporter, and counts
// the figure the last check read.
func TestMakeRoomAsksNoReporter(t *testing.T) {
	rep := &testReporter{bytes: 100 * mib}
	m, apps, _ := reportingMonitor(t, rep, MonitorConfig{Policy: Policy{Budget: 256 * mib, Margin: 8 * mib}})
	ctx := context.Background()
	apps.start("big", 64, AppUsage{LastActive: time.Now()})
	m.Check(ctx) // 100 MiB + big's tree: under budget; big's peak seen
	apps.stop("big")
	rep.set(200*mib, nil)
	m.Check(ctx) // c alone, at 200 MiB
	// What MakeRoom would see if it asked:
	rep.set(10*mib, nil)
	calls := rep.callCount()
	m.MakeRoom(ctx, "big") // 200 MiB + big's expected size: over budget
	if n := rep.callCount(); n != calls {
		t.Fatalf("MakeRoom asked the reporter %d times", n-calls)
	}
	if stopped, _ := apps.stops(); len(stopped) != 1 || stopped[0] != "c" {
		t.Fatalf("stopped %v, want c, counted at the 200 MiB the last check read", stopped)
	}
}
